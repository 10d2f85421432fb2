"""The outcome of :func:`losskit.doctor`: one :class:`Check` per check, a :class:`DoctorReport`
that prints as a table (rich, loaded when printed)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "DoctorReport", "show_value"]


@dataclass
class Check:
    """One check's outcome."""

    name: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    measured: Any = None
    expected: Any = None
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "measured": self.measured,
            "expected": self.expected,
            "advice": self.advice,
        }


@dataclass
class DoctorReport:
    """The checks of :func:`doctor`; ``ok`` when none failed. Prints as a table."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def summary(self) -> str:
        """``"ok"``, ``"ok, with warnings"`` or ``"problems found"``."""
        if not self.ok:
            return "problems found"
        return "ok, with warnings" if any(c.status == "warn" for c in self.checks) else "ok"

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [c.to_dict() for c in self.checks]}

    def table(self, title: str = "losskit doctor") -> Any:
        from rich.markup import escape
        from rich.table import Table

        colour = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
        table = Table(title=f"{title}: {self.summary}", title_justify="left", show_lines=True)
        for column in ("check", "status", "measured", "expected", "advice"):
            table.add_column(column, overflow="fold")
        for c in self.checks:
            table.add_row(
                c.name,
                f"[{colour[c.status]}]{c.status}[/]",
                escape(show_value(c.measured)),
                escape(show_value(c.expected)),
                escape(c.advice),
            )
        return table

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=120, record=True, file=io.StringIO())
        console.print(self.table())
        return console.export_text()


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def show_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
