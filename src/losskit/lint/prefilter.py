"""A cheap first look with the standard ``ast`` module: which files need libcst at all.

libcst's parse and name resolution cost ~100x CPython's own parser, and most files of a model
repository hold no loss call, no ``backward`` and no deprecated argument: no rule can fire there.
:func:`needs_rules` reads the identifiers of an ``ast`` tree (names, attributes, imported names,
keyword arguments) and answers whether any of the selected rules could.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Iterable
from typing import cast

from losskit.lint.parsing import deep_statements

#: the loss functions and classes the rules recognise (kept in step with ``engine.LOSSES``)
LOSS_WORDS = frozenset(
    {
        "cross_entropy",
        "nll_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "kl_div",
        "poisson_nll_loss",
        "margin_ranking_loss",
        "hinge_embedding_loss",
        "multilabel_margin_loss",
        "soft_margin_loss",
        "multilabel_soft_margin_loss",
        "cosine_embedding_loss",
        "multi_margin_loss",
        "CrossEntropyLoss",
        "NLLLoss",
        "BCELoss",
        "BCEWithLogitsLoss",
        "MSELoss",
        "L1Loss",
        "SmoothL1Loss",
        "HuberLoss",
        "KLDivLoss",
        "PoissonNLLLoss",
        "MarginRankingLoss",
        "HingeEmbeddingLoss",
        "MultiLabelMarginLoss",
        "SoftMarginLoss",
        "MultiLabelSoftMarginLoss",
        "CosineEmbeddingLoss",
        "MultiMarginLoss",
    }
)
ACTIVATION_WORDS = frozenset({"softmax", "sigmoid", "expit", "log_softmax", "Softmax", "Softmax2d", "Sigmoid"})

#: rule code -> the words one of which must occur for the rule to be able to fire
_NEEDS: dict[str, tuple[frozenset[str], ...]] = {
    "LK108": (frozenset({"size_average", "reduce"}),),
    "LK110": (frozenset({"backward"}),),
    "LK111": (frozenset({"backward"}),),
    "LK113": (frozenset({"log"}), ACTIVATION_WORDS),  # both
}


def identifiers(tree: ast.AST) -> set[str]:
    """Every name, attribute, imported name and keyword argument in ``tree``."""
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
        elif isinstance(node, ast.keyword) and node.arg:
            words.add(node.arg)
    return words


def needs_rules(tree: ast.AST, codes: Iterable[str], losses: frozenset[str] = LOSS_WORDS) -> bool:
    """Could any rule of ``codes`` report something in ``tree``? (False means: skip the file.)
    ``losses``: the words that name a loss here (torch's, and the file's criteria)."""
    words = identifiers(tree)
    for code in codes:
        needs = _NEEDS.get(code, (losses,))  # the loss-call rules need a loss name
        if all(words & group for group in needs):
            return True
    return False


#: a word of the text (identifiers, keywords, numbers; Unicode letters as Python allows them)
_WORD = re.compile(r"\w+")


def _lines(source: str) -> list[str]:
    """The lines as Python numbers them (ends kept): split at \\n, \\r\\n and \\r only --
    ``str.splitlines`` also splits at form feeds and other separators, which Python does not."""
    return io.StringIO(source, newline="").readlines()


def _span(node: ast.stmt) -> tuple[int, int]:
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])
    return start, node.end_lineno or node.lineno


#: the rules that follow a value back to what made it (a model's forward, a method, a helper, a
#: generator, the call sites of a function): the code that value passes through is kept
_FOLLOW = frozenset({"LK101", "LK102", "LK103", "LK104", "LK107", "LK113"})

#: LK108 needs the words as keyword arguments (not functools.reduce)
_LK108_TEXT = re.compile(r"\b(?:size_average|reduce)\s*=(?!=)")


def text_could_match(source: str, codes: list[str]) -> bool:
    """The same needs, on the text: a file none of whose needs appear as words is skipped before
    it is parsed. One pass of a simple pattern over the text gives its set of words (a search
    per rule for an alternation of some fifty loss names took twenty times as long)."""
    words = set(_WORD.findall(source))
    for code in codes:
        if all(words & group for group in _NEEDS.get(code, (LOSS_WORDS,))):
            if code == "LK108" and not _LK108_TEXT.search(source):
                continue
            return True
    return False


def _fires(
    words: set[str], codes: list[str], losses: frozenset[str], needs: dict[str, tuple[frozenset[str], ...]] = _NEEDS
) -> bool:
    return any(all(words & group for group in needs.get(code, (losses,))) for code in codes)


def _log_needs(units: list[tuple[ast.stmt, set[str], list[tuple[ast.stmt, set[str]]]]]) -> tuple[frozenset[str], ...]:
    """LK113's needs when it follows a value back: a ``log`` (or a call of a function of the file
    that takes one), and an activation -- named, or made by a class, function or module-level
    value of the file that names one (``model = Net()`` with a softmax ``Net``)."""
    made = {getattr(n, "name", "") for n, w, _ in units if w & ACTIVATION_WORDS} - {""}
    for _ in range(2):  # model = Net(); wrapped = nn.DataParallel(model)
        for n, w, _ in units:
            if isinstance(n, (ast.Assign, ast.AnnAssign)) and w & (made | ACTIVATION_WORDS):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                made |= set().union(*(identifiers(t) for t in targets)) - {"self"}
    logs = {getattr(n, "name", "") for n, w, _ in units if "log" in w} - {""}
    return (frozenset({"log"} | logs), ACTIVATION_WORDS | frozenset(made))


def _criteria(tree: ast.Module, words: set[str]) -> frozenset[str]:
    """Names the file gives to losses: ``criterion = nn.CrossEntropyLoss()``, ``self.loss_fn = ...``,
    ``from torch.nn import CrossEntropyLoss as CE``."""
    names = set(LOSS_WORDS)
    if not words & LOSS_WORDS:
        return frozenset(names)
    nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.alias) and node.asname and node.name.split(".")[-1] in LOSS_WORDS:
            names.add(node.asname)
    for node in nodes:
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            value, targets = node.value, [node.target]
        else:
            continue
        if identifiers(value) & names:
            for t in targets:
                names.update(identifiers(t) - {"self"})
    return frozenset(names)


def relevant_source(source: str, tree: ast.Module, codes: Iterable[str]) -> str | None:
    """``source`` with the top-level statements (and methods of classes) no selected rule needs
    replaced by empty lines -- so every kept line keeps its number and text -- or None when no
    statement is needed (the file cannot hold a finding). libcst then reads only what matters.

    Kept: imports, assignments at module and class level (criteria, models, optimizers), every
    statement or method in which a selected rule could fire, ``__init__`` of a kept class, and
    for LK110 the functions those call (a helper may zero the gradients); for the rules that
    follow a value back (LK101-LK104, LK107, LK113) also the functions the needed code calls
    (to a fixed point), the statements that call a function in which a rule fires (a parameter is
    followed to its call sites), and the ``forward`` (with ``__init__`` and the methods they
    call) of a class that names an activation, derives from a class of the file or is named by
    the needed code; for LK107 module-level ``y.scatter_(...)`` / ``y.zero_()`` statements (a
    one-hot target built in place)."""
    codes = list(codes)
    # (the caller, lint_source, has already ruled out files whose text no rule can match; a
    # statement's words are a subset of the text's, so the checks below give None for them too)
    # the words of each top-level statement, and of each method of a class, read off its lines
    # with one regular expression (C speed; words in strings and comments count too, which only
    # keeps more, never less, than the names of the syntax tree would)
    lines = _lines(source)

    def words_of(node: ast.stmt) -> set[str]:
        start, end = _span(node)
        return set(_WORD.findall("".join(lines[start - 1 : end])))

    units: list[tuple[ast.stmt, set[str], list[tuple[ast.stmt, set[str]]]]] = []
    for node in tree.body:
        members: list[tuple[ast.stmt, set[str]]] = []
        if isinstance(node, ast.ClassDef):
            members = [(m, words_of(m)) for m in node.body]
            words = set().union(*(w for _, w in members), *(identifiers(b) for b in node.bases))
        else:
            words = words_of(node)
        units.append((node, words, members))
    all_words = set().union(*(w for _, w, _ in units)) if units else set()
    losses = _criteria(tree, all_words)
    needs = dict(_NEEDS, LK113=_log_needs(units)) if "LK113" in codes else _NEEDS
    needed = [w for _, w, _ in units if _fires(w, codes, losses, needs)]
    if not needed:
        return None
    follow = bool(_FOLLOW & set(codes))
    _functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    helpers: set[str] = set()
    if ("LK110" in codes and "backward" in all_words) or follow:
        # follow calls from the needed code to the file's functions, to a fixed point: a helper
        # may zero the gradients (LK110), or make the value a loss is given (a generator, a
        # function returning one-hot targets)
        defs: dict[str, list[ast.AST]] = {}
        if "LK110" in codes and "backward" in all_words:  # nested helpers too
            functions: Iterable[ast.AST] = (n for n in ast.walk(tree) if isinstance(n, _functions))
        else:  # the file's functions and methods (no walk of the whole tree)
            functions = [n for n, _, ms in units for n in [n, *(m for m, _ in ms)] if isinstance(n, _functions)]
        for n in functions:
            defs.setdefault(n.name, []).append(n)  # type: ignore[attr-defined]
        known = {id(n): w for n, w, _ in units} | {id(m): w for _, _, ms in units for m, w in ms}  # words read
        # the words of what fires: a whole statement, or the members of a class that fire (not the
        # class's other methods)
        seeds: set[str] = set()
        for _, w, ms in units:
            if ms:
                seeds |= set().union(*(mw for _, mw in ms if _fires(mw, codes, losses, needs)))
            elif _fires(w, codes, losses, needs):
                seeds |= w
        if follow:  # the models and data a module-level assignment builds
            seeds |= set().union(*(w for n, w, _ in units if isinstance(n, (ast.Assign, ast.AnnAssign))))
        frontier = seeds & set(defs)
        while frontier - helpers:
            new = frontier - helpers
            helpers |= new
            frontier = set().union(*(known.get(id(d)) or words_of(d) for n in new for d in defs[n])) & set(defs)  # type: ignore[arg-type]
    # functions in which a rule fires: a parameter may be followed back to their call sites
    callers: set[str] = set()
    if follow:
        callers = {n.name for n, w, _ in units if isinstance(n, _functions) and _fires(w, codes, losses, needs)}
        callers |= {
            m.name for _, _, ms in units for m, w in ms if isinstance(m, _functions) and _fires(w, codes, losses, needs)
        }
        callers = {c for c in callers if c != "forward" and not c.startswith("__")}  # called as model(x)

    local_classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    in_place = "LK107" in codes

    deep = {start for start, _ in deep_statements(tree, lines)}

    def keep(node: ast.stmt, words: set[str]) -> bool:
        if _span(node)[0] in deep and not _fires(words, codes, losses, needs):
            return False  # a long generated expression no rule needs: left out (libcst is slow on it)
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)):
            return True
        if in_place and isinstance(node, ast.Expr) and words & {"scatter_", "zero_"}:
            return True
        return _fires(words, codes, losses, needs) or getattr(node, "name", None) in helpers or bool(words & callers)

    blank: list[tuple[int, int]] = []
    for node, words, members in units:
        if members:  # a class: keep it if anything in it is needed, with its __init__ and attributes
            # a model whose forward (or another method) may end in an activation, or inherits
            # such a forward from this file, or that the needed code names
            bases = set().union(*(identifiers(b) for b in cast(ast.ClassDef, node).bases))
            name = cast(ast.ClassDef, node).name
            model = follow and bool(words & ACTIVATION_WORDS or bases & local_classes or name in helpers)

            def needed_member(m: ast.stmt, w: set[str], model: bool = model) -> bool:
                return isinstance(m, _functions) and (keep(m, w) or (model and m.name == "forward"))

            kept = [
                m for m, w in members if not isinstance(m, _functions) or m.name == "__init__" or needed_member(m, w)
            ]
            if model:  # and the methods the kept ones call (VAE.forward -> self.decode), to a fixed point
                called = set().union(*(w for m, w in members if m in kept))
                while True:
                    more = [m for m, _ in members if m not in kept and getattr(m, "name", None) in called]
                    if not more:
                        break
                    kept += more
                    called |= set().union(*(w for m, w in members if m in more))
            if model and len(kept) == len(members):
                continue  # kept whole
            if model and not kept:
                continue  # a model with only other methods: kept whole (blanking all would leave no body)
            if model or any(needed_member(m, w) for m, w in members):
                blank.extend(_span(m) for m, _ in members if m not in kept)
                continue
        if not keep(node, words):
            blank.append(_span(node))
    lines = _lines(source)
    for start, end in blank:
        for i in range(start - 1, min(end, len(lines))):
            ending = lines[i][len(lines[i].rstrip("\r\n")) :]
            lines[i] = ending or "\n"
    return "".join(lines)
