"""LK108: deprecated ``size_average=`` / ``reduce=`` arguments of torch's losses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.names import CLASSES, FUNCTIONAL


def reduction_for(size_average: bool | None, reduce: bool | None) -> str:
    """torch's ``legacy_get_string``: ``reduce=False`` -> none; else ``size_average=False`` -> sum;
    else mean (``None`` counts as ``True``)."""
    if reduce is False:
        return "none"
    if size_average is False:
        return "sum"
    return "mean"


def _literal(node: cst.BaseExpression) -> bool | str | None:
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    return "?"


class DeprecatedReduction(Rule):
    code = "LK108"
    summary = "deprecated size_average= / reduce= arguments; use reduction="

    def check(self, ctx: Context) -> Iterable[Finding]:
        for call, _ in ctx.calls:
            names = ctx.names(call.func)
            if not any(q.startswith("torch.") and (q in CLASSES or q in FUNCTIONAL) for q in names):
                continue
            keywords = {a.keyword.value: a for a in call.args if a.keyword is not None}
            legacy = [k for k in ("size_average", "reduce") if k in keywords]
            if not legacy:
                continue
            values = {k: _literal(keywords[k].value) for k in legacy}
            fixable = "reduction" not in keywords and all(v != "?" for v in values.values())
            target = reduction_for(values.get("size_average"), values.get("reduce")) if fixable else None  # type: ignore[arg-type]
            fix = None
            if fixable:

                def replace(node: cst.CSTNode, target: str | None = target) -> cst.CSTNode:
                    assert isinstance(node, cst.Call)
                    kept = [
                        a
                        for a in node.args
                        if not (a.keyword is not None and a.keyword.value in ("size_average", "reduce"))
                    ]
                    last_comma = node.args[-1].comma
                    if kept and isinstance(kept[-1].comma, cst.MaybeSentinel):
                        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                    new = cst.Arg(
                        value=cst.SimpleString(f'"{target}"'),
                        keyword=cst.Name("reduction"),
                        equal=cst.AssignEqual(
                            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
                        ),
                        comma=last_comma,
                    )
                    return node.with_changes(args=[*kept, new])

                fix = ctx.fix_for(call, replace)
            shown = ", ".join(
                f"{k}={cast(cst.Name, keywords[k].value).value if isinstance(keywords[k].value, cst.Name) else '...'}"
                for k in legacy
            )
            advice = f'use reduction="{target}"' if target else 'use reduction= ("mean", "sum" or "none")'
            yield ctx.finding(self.code, call, f"deprecated {shown}; {advice}", fix)
