"""Print the corpus: every script, its collection, verdict and what it produced; or collect
the scripts from checkouts of their repositories.

Run: python -m tests.conformance.corpus
     python -m tests.conformance.corpus collect <folder holding custom-scripts/, field-delineation/>
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eobatch.script import EvalscriptError
from tests.conformance.corpus.references import REFERENCES
from tests.conformance.corpus.runner import SCRIPTS, describe, load_manifest, run


def collect(checkouts: Path) -> None:
    """Copy every manifest script, at its recorded commit, from git checkouts of its repository
    (`<checkouts>/<repository name>`), checking each copy against the recorded SHA-256."""
    for entry in load_manifest():
        name = entry.repo.split("/")[1]
        text = subprocess.run(
            ["git", "-C", str(checkouts / name), "show", f"{entry.commit}:{entry.path}"],
            check=True,
            capture_output=True,
        ).stdout
        if hashlib.sha256(text).hexdigest() != entry.sha256:
            raise SystemExit(f"{entry.id} at {entry.commit} is not the script the manifest records")
        target = SCRIPTS / name / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text)
    print(f"collected {len(load_manifest())} scripts into {SCRIPTS}")


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
        table.add_row(
            entry.id,
            entry.collection,
            entry.verdict if ok else "[red]UNEXPECTED[/]",
            outcome,
            "yes" if entry.id in REFERENCES else "",
        )
    console = Console()
    console.print(table)
    console.print(counts)


if __name__ == "__main__":
    if sys.argv[1:2] == ["collect"] and len(sys.argv) == 3:
        collect(Path(sys.argv[2]))
    else:
        main()
