"""JSON the switcher reads from stdin or from its state folder that no builder writes.

Python's json module takes NaN, 1e999, a key given twice and a lone surrogate, and fails on a
thousand-deep nesting or a 5000-digit integer with errors that are not JSONDecodeError. Every
one of them, in a manifest, a delta or a request, is refused like any malformed input: one
line naming what was wrong, exit 2, nothing written; in a state file the switcher wrote itself
(history, pending.json, a snapshot record) it is a damaged file, never an internal error. A
name checked by a pattern takes no trailing newline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.activate.conftest import web_stack
from tests.activate.switcherkit import Entry, push, switcher
from tests.hostile.test_hostile_bundles import raw_stream, refused, server

__all__ = ["server"]  # the fixture: generation 1 received

DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE: dict[str, tuple[bytes, str]] = {
    "nested-100000": (DEEP, "nested deeper than 64 levels"),
    "nested-100": (b'{"a":' * 100 + b"1" + b"}" * 100, "nested deeper than 64 levels"),
    "int-5000-digits": (b'{"generation": ' + b"7" * 5000 + b"}", "longer than 19 digits"),
    "nan": (b'{"generation": NaN}', "NaN"),
    "infinity": (b'{"generation": -Infinity}', "-Infinity"),
    "float-overflow": (b'{"generation": 1e999}', "too large for a float"),
    "duplicate-key": (b'{"format": 1, "format": 1}', "the key 'format' appears twice"),
    "top-level-list": (b"[1, 2]", "expected a JSON object, got a JSON list"),
    "top-level-string": (b'"manifest"', "expected a JSON object, got a string"),
    "lone-surrogate": (b'{"host": "\\ud800"}', "lone surrogate"),
    "not-utf8": (b'{"host": "\xff"}', "not UTF-8"),
}


def one_line_refusal(r: object, *fragments: str) -> str:
    rc, stderr, stdout = r.rc, r.stderr, r.stdout  # type: ignore[attr-defined]
    assert rc == 2, r
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and "internal error" not in stderr, r
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert stdout == ""
    return lines[0]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_manifest_is_refused_in_one_line(server: Path, case: str) -> None:
    data, fragment = HOSTILE[case]
    stream = raw_stream([Entry("manifest.json", data)])
    refused(server, stream, "receive: manifest.json", fragment)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_delta_is_refused_in_one_line(server: Path, case: str) -> None:
    data, fragment = HOSTILE[case]
    stream = raw_stream([Entry("manifest.delta.json", data)])
    refused(server, stream, "receive: manifest.delta.json", fragment)


@pytest.mark.parametrize(
    "case", ["nested-100000", "int-5000-digits", "nan", "float-overflow", "duplicate-key"]
)
@pytest.mark.parametrize("command", ["have", "secrets-have"])
def test_a_hostile_request_is_refused_in_one_line(server: Path, command: str, case: str) -> None:
    data, fragment = HOSTILE[case]
    r = switcher(command, server / "state", server / "root", stdin=data)
    one_line_refusal(r, f"{command}: stdin", fragment)


def test_secrets_receive_refuses_a_deep_request_without_quoting_it(server: Path) -> None:
    data = b'{"secrets": [{"name": "db", "value": "hunter2-' + b"[" * 5000 + b'"}]}' + DEEP
    r = switcher(
        "secrets-receive", server / "state", server / "root", "--generation", "1", stdin=data
    )
    line = one_line_refusal(r, "secrets-receive: stdin")
    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("command", "args", "stdin", "fragment"),
    [
        ("have", (), b'{"base": "1-0123456789ab\\n", "hashes": []}', "is not a generation folder"),
        ("confirm", ("--run", "1-1764081000123\n"), b"", "expected GENERATION-NUMBER"),
        ("have", (), b'{"base": "\xd9\xa1-0123456789ab", "hashes": []}', "generation folder"),
    ],
    ids=["base-newline", "run-newline", "base-arabic-digit"],
)
def test_a_name_with_a_trailing_newline_or_foreign_digits_is_refused(
    server: Path, command: str, args: tuple[str, ...], stdin: bytes, fragment: str
) -> None:
    r = switcher(command, server / "state", server / "root", *args, stdin=stdin)
    one_line_refusal(r, fragment)


def test_damaged_history_lines_are_skipped(server: Path) -> None:
    state, root = server / "state", server / "root"
    good = {"time": "2026-11-25T16:00:00Z", "action": "rollback", "to": 1, "result": "ok"}
    lines = [json.dumps(good).encode(), DEEP, b'{"to": NaN}', b"7" * 5000, b'{"a": 1, "a": 2}']
    (state / "history.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    r = switcher("history", state, root)
    assert r.rc == 0, r
    assert r.data == [good]


def test_a_damaged_pending_journal_is_not_an_internal_error(server: Path) -> None:
    state, root = server / "state", server / "root"
    (state / "pending.json").write_bytes(DEEP)
    r = switcher("status", state, root, "--services", "none")
    assert r.rc == 0 and "internal error" not in r.stderr, r
    assert r.data["recovered"] is None


def test_a_damaged_snapshot_record_is_one_line(server: Path) -> None:
    state, root = server / "state", server / "root"
    assert push(web_stack(2, state), state, root).rc == 0
    for number in ("1", "2"):
        r = switcher("activate", state, root, "--generation", number, "--services", "none")
        assert r.rc == 0, r
    record = state / "snapshots" / "2" / "snapshot.json"  # what activating 2 kept
    record.parent.mkdir(parents=True)
    record.write_bytes(b'{"volumes": [' + b"1" * 5000 + b"]}")
    r = switcher("rollback", state, root, "--to", "1", "--restore-data", "--services", "none")
    assert r.rc == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert str(record) in lines[0] and "longer than 19 digits" in lines[0], lines[0]
