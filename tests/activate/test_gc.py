"""gc: old generations go, the current one and the rollback targets stay, then unused objects."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from .conftest import web_stack
from .switcherkit import Bundle, push, sha256, switcher


def numbers(state: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in (state / "generations").iterdir())


def cut_after_objects(bundle: Bundle, shas: list[str]) -> bytes:
    """A stream that stops right after some objects, as when the connection drops."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("manifest.json", bundle.manifest_bytes)] + [
            (f"objects/{sha}", bundle.objects()[sha]) for sha in shas
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        cut = raw.getvalue()  # before close(): no end-of-archive blocks
    return gzip.compress(cut)[:-8]  # and no gzip trailer


def have_missing(state: Path, root: Path, shas: list[str]) -> list[str]:
    return switcher("have", state, root, stdin=json.dumps(shas).encode()).data["missing"]


def test_gc_keeps_newest_current_and_rollback_targets(state: Path, root: Path) -> None:
    for n in range(1, 6):
        assert push(web_stack(n, state, index=f"v{n}\n".encode()), state, root).rc == 0
        assert switcher("activate", state, root, "--generation", str(n)).rc == 0
    assert switcher("rollback", state, root, "--to", "3").rc == 0
    # A push cut short leaves an object that no generation uses.
    partial = web_stack(6, state, index=b"v6\n")
    sent = [sha256(b"v6\n"), *sorted(set(partial.objects()) - {sha256(b"v6\n")})]
    assert switcher("receive", state, root, stdin=cut_after_objects(partial, sent)).rc == 1
    assert have_missing(state, root, [sha256(b"v6\n")]) == []

    r = switcher("gc", state, root, "--keep", "1")

    assert r.rc == 0, r
    # 5 is the newest, 3 current, 5 also the previously active one, 2 the rollback target.
    assert r.data["removed"] == [1, 4]
    assert numbers(state) == [2, 3, 5]
    assert r.data["objects_removed"] == 3  # v1, v4 and the partial push's v6
    gone = [sha256(b"v1\n"), sha256(b"v4\n"), sha256(b"v6\n")]
    kept = [sha256(b"v2\n"), sha256(b"v3\n"), sha256(b"v5\n")]
    assert have_missing(state, root, gone + kept) == gone
    # What is left still activates, scripts with their own mode included.
    assert switcher("activate", state, root, "--generation", "2").rc == 0
    assert (state / "current/scripts/backup.sh").stat().st_mode & 0o111
    assert json.loads((state / "history.jsonl").read_text().splitlines()[-2])["action"] == "gc"


def test_gc_never_removes_the_current_generation(state: Path, root: Path) -> None:
    for n in (1, 2):
        assert push(web_stack(n, state, index=f"v{n}\n".encode()), state, root).rc == 0
    assert switcher("activate", state, root, "--generation", "1").rc == 0

    r = switcher("gc", state, root, "--keep", "0")

    assert r.rc == 0, r
    assert r.data["removed"] == [2]
    assert numbers(state) == [1]
    assert (state / "current/files/web/index.html").read_bytes() == b"v1\n"


def test_gc_twice_removes_nothing_more(state: Path, root: Path) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert switcher("activate", state, root, "--generation", "1").rc == 0

    first = switcher("gc", state, root, "--keep", "1")
    second = switcher("gc", state, root, "--keep", "1")

    assert first.data["removed"] == [] and first.data["objects_removed"] == 0, first
    assert second.data == first.data


def test_gc_refuses_a_negative_keep(state: Path, root: Path) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = switcher("gc", state, root, "--keep", "-1")

    assert r.rc == 2, r
    assert numbers(state) == [1]
