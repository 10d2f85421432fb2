"""Findings as text, JSON, GitHub workflow annotations, or SARIF 2.1.0 (GitHub code scanning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from losskit.lint.engine import PARSE_ERROR, Finding

__all__ = ["FORMATS", "format_findings"]

FORMATS = ("text", "json", "github", "sarif")

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_HELP_URI = "https://losskit.readthedocs.io/en/latest/lint/#the-rules"


def _escape_data(text: str) -> str:
    """GitHub's escaping of a workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """... and of its properties (``file=``, ``title=``)."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(f: Finding) -> str:
    where = f"cell {f.cell}, line {f.line}: " if f.cell is not None else ""
    line = f.line if f.cell is None else 1  # a notebook's cells have no file line GitHub knows
    return (
        f"::error file={_escape_property(f.path)},line={line},col={f.col},title={_escape_property(f.code)}::"
        f"{_escape_data(where + f.code + ' ' + f.message)}"
    )


def _uri(path: str) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return p.as_uri()
    return p.as_posix()


def _sarif(findings: list[Finding]) -> dict[str, Any]:
    from losskit import __version__
    from losskit.lint.rules import RULES

    rules = [
        {"id": PARSE_ERROR, "name": "not-checked", "shortDescription": {"text": "a file that could not be checked"}},
        *(
            {
                "id": r.code,
                "name": type(r).__name__,
                "shortDescription": {"text": r.summary},
                "helpUri": _HELP_URI,
            }
            for r in RULES
        ),
    ]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for f in findings:
        text = f.message if f.cell is None else f"cell {f.cell}, line {f.line}: {f.message}"
        region = {"startLine": f.line if f.cell is None else 1, "startColumn": f.col if f.cell is None else 1}
        result: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": index.get(f.code, 0),
            "level": "error" if f.code != PARSE_ERROR else "warning",
            "message": {"text": text},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(f.path)}, "region": region}}],
        }
        if f.cell is not None:
            result["properties"] = {"cell": f.cell, "line": f.line, "col": f.col}
        results.append(result)
    return {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "losskit lint",
                        "version": __version__,
                        "informationUri": _HELP_URI,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def format_findings(findings: list[Finding], fmt: str) -> str:
    """``text`` (one ``path:line:col: CODE message`` line each, ``[*]`` when ``--fix`` repairs
    it), ``json`` (a list of objects), ``github`` (``::error`` workflow commands) or ``sarif``."""
    if fmt == "json":
        return json.dumps([f.to_dict() for f in findings], indent=2)
    if fmt == "sarif":
        return json.dumps(_sarif(findings), indent=2)
    if fmt == "github":
        return "\n".join(_github(f) for f in findings)
    if fmt != "text":
        raise ValueError(f"format_findings: fmt {fmt!r} is unknown; expected one of {', '.join(FORMATS)}.")
    return "\n".join(f"{f.location}: {f.code} {f.message}{' [*]' if f.fixable else ''}" for f in findings)
