"""``losskit lint``: find loss misuse in source code, with safe automatic fixes.

* :func:`lint_source` / :func:`lint_paths` -- the findings (``code``, ``path``, ``line``, ``col``,
  ``message``, ``fixable``);
* :func:`fix_source` -- apply the safe (or also the unsafe) fixes, preserving formatting;
* :data:`losskit.lint.rules.RULES` -- one rule per file under ``losskit/lint/rules/``.

Needs the ``lint`` extra (libcst, pathspec). Suppress a finding with ``# losskit: ignore[LK101]``
(or a bare ``# losskit: ignore``) on its line.
"""

from losskit.lint.engine import Finding, lint_source
from losskit.lint.fixing import fix_source
from losskit.lint.runner import LintResult, format_findings, lint_paths

__all__ = ["Finding", "lint_source", "fix_source", "lint_paths", "LintResult", "format_findings"]
