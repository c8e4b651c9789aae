"""The backup program on the server (activate/backup/) reads JSON with the switcher's checks
(activate/strict_json.py): a tampered plan or an odd listing is one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from activate.backup import config as script
from activate.errors import Failed

PROGRAM = [sys.executable, "-B", "-m", "activate.backup"]

HOSTILE = {
    "deep-nesting": (
        b'{"format": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "nested deeper than 64 levels",
    ),
    "shallow-but-deep": (b"[" * 70 + b"]" * 70, "nested deeper than 64 levels"),
    "duplicate-key": (
        b'{"format": 1, "format": 2}',
        "the key 'format' appears twice in one object",
    ),
    "huge-integer": (b'{"format": 1' + b"0" * 5000 + b"}", "an integer longer than 19 digits"),
    "nan": (b'{"format": NaN}', "NaN (not JSON)"),
    "overflow": (b'{"format": 1e999}', "a number too large for a float"),
    "list-at-top": (b"[1]", "not the JSON expected (a list at the top level)"),
    "not-utf8": (b'{"format": "\xff"}', "not valid JSON"),
}


@pytest.mark.parametrize("data, problem", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_tampered_plan_is_one_line(tmp_path: Path, data: bytes, problem: str) -> None:
    plan = tmp_path / "backup.json"
    plan.write_bytes(data)
    done = subprocess.run(
        [*PROGRAM, "--config", str(plan), "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"error: {plan}: ") and problem in line, line
    assert line.endswith("; rebuild and push the bundle"), line


@pytest.mark.parametrize(
    "listing, problem",
    [
        ('{"id": "abc"}', "not the JSON expected (an object at the top level)"),
        ('[{"id": "abc"}, "x"]', 'an entry without a string "id"'),
        ('[{"id": 7}]', 'an entry without a string "id"'),
        ("[" * 2000 + "]" * 2000, "not valid JSON: nested deeper than 64 levels"),
    ],
)
def test_an_odd_snapshot_listing_is_one_failure(listing: str, problem: str) -> None:
    with pytest.raises(Failed) as e:
        script.json_records(listing, "restic's snapshot list")
    assert str(e.value) == f"restic's snapshot list: {problem}"


def test_empty_and_null_listings_are_no_snapshots() -> None:
    assert script.json_records("", "x") == []
    assert script.json_records("null", "x") == []
    assert script.json_records('[{"id": "abc", "n": 3}]', "x") == [{"id": "abc", "n": 3}]
