"""Every fix applied to every fixture: the fixed file parses, a clean fixture is left alone, and
the fixed *program* computes what the original did wherever the fix is meant to keep behaviour
(the safe fixes), or the value the fix is meant to produce (the unsafe fixes, and LK106, whose
original raises). The fixture programs run here, with torch."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losskit.lint import fix_source, lint_source

FIXTURES = Path(__file__).parent / "fixtures"
ALL = sorted(FIXTURES.glob("*/*.py"))


def _run(source: str, path: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"fixture_{path.parent.name}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size_average / reduce deprecation warnings of the originals
        exec(compile(source, str(path), "exec"), namespace)
    return namespace


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y_prob = torch.rand(6, 4, generator=g, dtype=torch.float64)
    classes = torch.randint(0, 4, (6,), generator=g)
    return z, y_prob, classes


def _lk103(ns: dict[str, Any]) -> Any:
    z, y, _ = _inputs()
    w = torch.rand(6, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64) + 0.5
    return ns["loss"](z, y, w)


def _lk103_bad(ns: dict[str, Any]) -> Any:
    z, y, _ = _inputs(1)
    return ns["loss"](z.float(), y.float())


def _lk108(ns: dict[str, Any]) -> Any:
    z, y, classes = _inputs(2)
    probs = torch.sigmoid(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            ns["a"](z, classes),
            ns["b"](z, y),
            ns["c"](z, y),
            ns["d"](F.log_softmax(z, 1), classes),
            ns["e"](probs, y),
            ns["f"](z, y),
            ns["g"](z, classes),
            ns["h"](z, y),
        )


def _classifier_training(seed: int, batches: int) -> tuple[nn.Linear, torch.optim.SGD, list[Any]]:
    """A small classifier, its optimizer and a loader of ``batches`` seeded batches."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    g = torch.Generator().manual_seed(seed)
    loader = [(torch.randn(5, 4, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(batches)]
    return model, torch.optim.SGD(model.parameters(), lr=0.1), loader


def _lk111(ns: dict[str, Any]) -> Any:
    model, optimizer, loader = _classifier_training(3, 4)
    history: list[tuple[float, float]] = []
    ns["train"](model, loader, optimizer, nn.CrossEntropyLoss(), history)
    return torch.tensor(history[0]), model.weight.detach().clone(), model.bias.detach().clone()


def _lk111_returned(ns: dict[str, Any]) -> Any:
    model, optimizer, loader = _classifier_training(5, 3)
    mean = ns["train_epoch"](model, loader, optimizer, nn.CrossEntropyLoss())
    return mean.detach(), model.weight.detach().clone()


#: logits far apart: in float32 exp(-240) and sigmoid(-120) underflow to 0, and 1 - sigmoid(121)
#: rounds to 0, so each hand-written log is -inf somewhere; the fused forms stay finite
_EXTREME = torch.tensor([[-120.0, 0.0, 3.0, 120.0], [1.0, -2.0, 0.5, 0.0]])


def _lk113(ns: dict[str, Any]) -> Any:
    return ns["scores"](_EXTREME, 1.0)


def _lk113_expected() -> Any:
    z = _EXTREME
    return torch.stack([F.log_softmax(z, 1), F.logsigmoid(z), F.logsigmoid(-(z + 1.0)), F.logsigmoid(-z)])


def _class_ids(ns: dict[str, Any], *extra: Any) -> Any:
    z, _, classes = _inputs(4)
    return ns["loss"](z, classes, *extra)


def _probs_targets(ns: dict[str, Any]) -> Any:
    z, y, _ = _inputs(5)
    return ns["loss"](z, y)


#: fixture -> (driver, what the fixed program must give: "same" as the original, or a function
#: of the inputs computing the intended value with plain torch)
DRIVERS: dict[str, tuple[Callable[[dict[str, Any]], Any], Any]] = {
    "LK103/fix.in.py": (_lk103, "same"),  # sigmoid + BCE == BCE with logits (moderate logits)
    "LK103/bad.py": (_lk103_bad, "same"),
    "LK108/fix.in.py": (_lk108, "same"),  # size_average / reduce == the reduction= they map to
    "LK111/fix.in.py": (_lk111, "same"),  # .detach() keeps the totals and the training
    "LK111/returned.in.py": (_lk111_returned, "same"),  # the returned mean and the training
    # LK106: the original raises (float class ids); the fixed one is cross-entropy on the ids
    "LK106/fix.in.py": (_class_ids, lambda: 2 * F.cross_entropy(_inputs(4)[0], _inputs(4)[2])),
    "LK106/device.in.py": (
        lambda ns: _class_ids(ns, "cpu"),
        lambda: 5 * F.cross_entropy(_inputs(4)[0], _inputs(4)[2]),
    ),
    # the unsafe fixes change what is computed, on purpose: to the loss on the raw logits
    "LK101/unsafe.in.py": (_class_ids, lambda: F.cross_entropy(_inputs(4)[0], _inputs(4)[2])),
    "LK102/unsafe.in.py": (
        _probs_targets,
        lambda: F.binary_cross_entropy_with_logits(_inputs(5)[0], _inputs(5)[1]),
    ),
    "LK104/unsafe.in.py": (
        _class_ids,
        lambda: 2 * F.nll_loss(F.log_softmax(_inputs(4)[0], 1), _inputs(4)[2]),
    ),
    # log(softmax) -> log_softmax, log(sigmoid(x)) -> logsigmoid(x), log(1 - sigmoid(x)) ->
    # logsigmoid(-x): the same function, finite where the original is -inf
    "LK113/unsafe.in.py": (_lk113, _lk113_expected),
}


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", ALL, ids=_key)
def test_every_fix_on_every_fixture(path):
    source = path.read_text()
    fixed, applied = fix_source(source, str(path), unsafe=True)
    if path.parent.name == "LK000":  # a file that does not parse is never rewritten
        assert (fixed, applied) == (source, 0)
        return
    ast.parse(fixed)  # a fixed file always parses
    safe_only, _ = fix_source(source, str(path))
    ast.parse(safe_only)
    if path.name.startswith("good") or path.name.endswith(".out.py"):  # clean code: nothing to fix
        own = fix_source(source, str(path), unsafe=True, select=[path.parent.name])
        assert own == (source, 0)
    if path.name.startswith("nofix"):  # findings whose fix would change the program: none offered
        assert lint_source(source, str(path), select=[path.parent.name])
        assert fix_source(source, str(path), select=[path.parent.name]) == (source, 0)
    driver = DRIVERS.get(_key(path))
    if driver is None:
        return
    run, expected = driver
    assert applied >= 1
    after = run(_run(fixed, path))
    if expected == "same":
        before = run(_run(source, path))
        assert_close(after, before)
    else:
        if path.name.startswith("unsafe"):  # the original runs and gives another value: the bug
            assert not torch.allclose(run(_run(source, path)), expected())
        else:  # LK106: the original fails on float class ids
            with pytest.raises(RuntimeError, match="target dtype|expected scalar type Long"):
                run(_run(source, path))
        assert_close(after, expected())


def assert_close(a: Any, b: Any) -> None:
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_close(x, y)
        return
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_drivers_cover_every_fix_fixture():
    fix_fixtures = {_key(p) for p in FIXTURES.glob("*/*.in.py")}
    assert fix_fixtures <= set(DRIVERS), sorted(fix_fixtures - set(DRIVERS))
