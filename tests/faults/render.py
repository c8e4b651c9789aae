"""Render the fault points' outcomes (written by tests/faults/test_faults.py) into the table of
docs/reliability.md, between its `<!-- fault-table -->` markers.

    .venv/bin/pytest -q tests/faults && .venv/bin/python -m tests.faults.render

Run-to-run noise (ports, hashes, unit numbers, CRC values) is normalised, and counts that
depend on how far a hurt push got (files sent, objects kept) stay in the results file, so that
the table changes only when an outcome does. The last test of tests/faults compares the whole
table with `table()` of its run (`stale()`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("BUNDLE_FAULT_RESULTS", REPO / "build/fault-results.json"))
DOC = REPO / "docs/reliability.md"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"

NOISE = [
    (re.compile(r"bundle-activate-\d+(?:-\d+)?"), "bundle-activate-N"),  # before the hex rule
    (re.compile(r"\b[0-9a-f]{12,}\b"), "…"),
    (re.compile(r"0x[0-9a-f]+"), "0x…"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"ssh -p \d+ "), "ssh -p PORT "),
    (re.compile(r"10\.200\.\d+\.2"), "SERVER"),
    (re.compile(r"\(exit code -?\d+\)"), "(killed)"),
    (re.compile(r"`cd /var/lib/bundle/[^`]*python3 -B -m activate (\w+)[^`]*`"), r"`activate \1`"),
    (re.compile(r"\|"), "\\|"),
]


def clean(text: str, limit: int = 170) -> str:
    for pattern, replacement in NOISE:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def table(results: list[dict[str, str]]) -> str:
    rows = [
        "| # | point | what was done | the deployer saw | after the fault | repaired by | next deploy |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        cells = [
            str(i),
            f"`{r['point']}`",
            clean(r["fault"]),
            clean(r["deployer"]),
            clean(f"{r['after']}; {r['objects']}"),
            clean(r["repair"]),
            clean(r["next"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _split(doc: Path) -> tuple[str, str, str]:
    """The doc before the table, the table, and after it."""
    text = doc.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no {START} … {END} markers")
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    return head, section.removeprefix("\n"), tail


def stale(results: list[dict[str, str]], doc: Path = DOC) -> str | None:
    """How the table in `doc` differs from the one `results` make (a unified diff); None when
    it is the same."""
    _head, documented, _tail = _split(doc)
    wanted = table(results)
    if documented == wanted:
        return None
    diff = difflib.unified_diff(
        documented.splitlines(), wanted.splitlines(), "docs (committed)", "this run", lineterm=""
    )
    return "\n".join(diff)


def render(results_path: Path = RESULTS, doc: Path = DOC) -> None:
    results = json.loads(results_path.read_text())
    head, _old, tail = _split(doc)
    doc.write_text(f"{head}{START}\n{table(results)}{END}{tail}")
    print(f"{doc}: {len(results)} fault points")


if __name__ == "__main__":
    render(*(Path(a) for a in sys.argv[1:]))
