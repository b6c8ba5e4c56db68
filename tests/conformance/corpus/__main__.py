"""Print the corpus: every script, its collection, verdict and what it produced.

Run: python -m tests.conformance.corpus
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from eobatch.script import EvalscriptError
from tests.conformance.corpus.references import REFERENCES
from tests.conformance.corpus.runner import describe, load_manifest, run


def main() -> None:
    table = Table(title="evalscript corpus")
    for column in ("script", "collection", "verdict", "result", "numpy"):
        table.add_column(column)
    counts = {"runs": 0, "script-fault": 0, "unexpected": 0}
    for entry in load_manifest():
        if entry.text() is None:
            table.add_row(entry.id, entry.collection, entry.verdict, "[dim]not stored[/]", "")
            continue
        try:
            outcome = ", ".join(f"{k} {v}" for k, v in describe(run(entry).result).items())
            ok = entry.verdict == "runs"
        except EvalscriptError as exc:
            outcome = str(exc)[:90]
            ok = entry.verdict == "script-fault" and entry.error in str(exc)
        counts[entry.verdict if ok else "unexpected"] += 1
        table.add_row(entry.id, entry.collection, entry.verdict if ok else "[red]UNEXPECTED[/]",
                      outcome, "yes" if entry.id in REFERENCES else "")  # fmt: skip
    console = Console()
    console.print(table)
    console.print(counts)


if __name__ == "__main__":
    main()
