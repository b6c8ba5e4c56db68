"""The one error type of the evalscript package, and its construction from V8's reports."""

from __future__ import annotations

import json
import re

# First line of a V8 exception report: "<anonymous>:3: SyntaxError: Unexpected token ';'".
_REPORT_HEAD = re.compile(r"^(?:<anonymous>|evalscript\.js):(\d+): (.*)$")


class EvalscriptError(Exception):
    """The evalscript is invalid or failed; `line`/`column` (1-based) point into the script."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message, line, column)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{self.message} (evalscript {where})"

    def __reduce__(self) -> tuple:
        return (type(self), (self.message, self.line, self.column))


def from_report(report: str, first_line_offset: int) -> EvalscriptError:
    """An error from the JSON description the prelude returns (message, where, line, column)."""
    data = json.loads(report)
    message = data["message"]
    if data.get("where"):
        message = f"{message} in {data['where']}"
    line, column = data.get("line"), data.get("column")
    return EvalscriptError(message, line, _column(line, column, first_line_offset))


def from_v8_exception(text: str, first_line_offset: int) -> EvalscriptError:
    """An error from mini-racer's exception text (syntax errors and uncaught throws)."""
    lines = text.splitlines()
    head = _REPORT_HEAD.match(lines[0]) if lines else None
    if head is None:
        return EvalscriptError(text.strip() or "unknown JavaScript error")
    line = int(head.group(1))
    column = None
    # V8 prints the offending source line, then a caret under the position.
    if len(lines) > 2 and lines[2].strip() == "^":
        column = lines[2].index("^") + 1
    return EvalscriptError(head.group(2), line, _column(line, column, first_line_offset))


def _column(line: int | None, column: int | None, first_line_offset: int) -> int | None:
    # The wrapper that isolates each script shares the script's first line.
    if line == 1 and column is not None:
        return max(1, column - first_line_offset)
    return column
