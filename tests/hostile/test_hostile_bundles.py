"""Hostile bundles on the server: every crafted stream is refused by `receive` with one line and
exit 2, before anything is written outside the staging folder STATE/incoming/ (which is then
empty again), and no generation is registered.

Each test starts from a server that already holds generation 1 and compares a snapshot of the
whole tree (state folder and root) before and after the hostile push.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.activate.conftest import web_stack
from tests.activate.switcherkit import Bundle, Entry, finish, push, sha256, switcher, tar_stream

EVIL_INDEX = b"<h1>defaced</h1>\n"


def snapshot(top: Path) -> dict[str, str]:
    """Every path under `top` (the test's tmp folder) with what it is, except staging and the
    lock file (the lock's text names the last holder)."""
    seen: dict[str, str] = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).as_posix()
        if rel.startswith("state/incoming/") or rel == "state/lock":
            continue
        if path.is_symlink():
            seen[rel] = f"link {path.readlink()}"
        elif path.is_dir():
            seen[rel] = "dir"
        else:
            seen[rel] = (
                f"file {hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mode:o}"
            )
    return seen


@pytest.fixture
def server(tmp_path: Path, state: Path, root: Path) -> Path:
    """Generation 1 received; returns the tmp folder holding state/ and root/."""
    first = push(web_stack(1, state), state, root)
    assert first.rc == 0, first
    return tmp_path


def evil(state: Path) -> Bundle:
    return web_stack(2, state, index=EVIL_INDEX)


def refused(server: Path, stream: bytes, *fragments: str) -> None:
    state, root = server / "state", server / "root"
    before = snapshot(server)
    r = switcher("receive", state, root, stdin=stream)
    assert r.rc == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert r.stdout == ""
    assert snapshot(server) == before
    assert list((state / "incoming").iterdir()) == []
    assert [g.name for g in (state / "generations").iterdir()] == [web_stack(1, state).folder]
    have = switcher("have", state, root, stdin=json.dumps([sha256(EVIL_INDEX)]).encode())
    assert have.data == {"missing": [sha256(EVIL_INDEX)]}, have


def with_entry(make: Callable[[Path], Entry], *, manifest: bool = True) -> Callable[[Path], bytes]:
    """A stream of generation 2 whose objects are fine, with one hostile entry among them."""

    def build(server: Path) -> bytes:
        bundle = evil(server / "state")
        objects = sorted(bundle.objects().items())
        half = len(objects) // 2
        entries = [Entry(f"objects/{sha}", data) for sha, data in objects]
        head = [Entry("manifest.json", bundle.manifest_bytes)] if manifest else []
        return raw_stream([*head, *entries[:half], make(server), *entries[half:]])

    return build


def raw_stream(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.size = len(entry.data) if info.isreg() else 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(entry.data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


EVIL_SHA = sha256(EVIL_INDEX)

ENTRIES: dict[str, tuple[Callable[[Path], Entry], str]] = {
    "dotdot": (lambda s: Entry("../escaped", EVIL_INDEX), "'../escaped'"),
    "dotdot-inside-objects": (
        lambda s: Entry(f"objects/{EVIL_SHA}/../../../escaped", EVIL_INDEX),
        "only manifest.json and objects/<sha256>",
    ),
    "absolute-path": (lambda s: Entry(str(s / "escaped"), EVIL_INDEX), "refusing tar entry '/"),
    "absolute-path-into-state": (
        lambda s: Entry(str(s / "state/objects" / EVIL_SHA[:2] / EVIL_SHA), EVIL_INDEX),
        "refusing tar entry",
    ),
    "symlink-out-of-the-tree": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.SYMTYPE, linkname=str(s / "escaped")),
        "only regular files",
    ),
    "symlink-to-etc-passwd": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        "only regular files",
    ),
    "hard-link-to-etc-shadow": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.LNKTYPE, linkname="/etc/shadow"),
        "only regular files",
    ),
    "hard-link-to-the-manifest": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.LNKTYPE, linkname="manifest.json"),
        "only regular files",
    ),
    "character-device": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.CHRTYPE),
        "only regular files",
    ),
    "block-device": (
        lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.BLKTYPE),
        "only regular files",
    ),
    "fifo": (lambda s: Entry(f"objects/{EVIL_SHA}", type=tarfile.FIFOTYPE), "only regular files"),
    "folder": (lambda s: Entry("objects", type=tarfile.DIRTYPE), "only regular files"),
    "contiguous-file": (
        lambda s: Entry(f"objects/{EVIL_SHA}", EVIL_INDEX, type=tarfile.CONTTYPE),
        "only regular files",
    ),
}


@pytest.mark.parametrize("case", sorted(ENTRIES))
def test_hostile_entry_is_refused(server: Path, case: str) -> None:
    make, fragment = ENTRIES[case]
    refused(server, with_entry(make)(server), "receive: refusing tar entry", fragment)


def test_symlink_in_place_of_the_manifest_is_refused(server: Path) -> None:
    stream = raw_stream([Entry("manifest.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")])
    refused(server, stream, "'manifest.json'", "only regular files")


def test_pax_header_that_renames_an_entry_is_refused(server: Path) -> None:
    # the entry's plain name is harmless; its pax `path` record, which wins, climbs out
    bundle = evil(server / "state")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(bundle.manifest_bytes)
        tar.addfile(info, io.BytesIO(bundle.manifest_bytes))
        info = tarfile.TarInfo(f"objects/{EVIL_SHA}")
        info.size = len(EVIL_INDEX)
        info.pax_headers = {"path": f"../../{EVIL_SHA}"}
        tar.addfile(info, io.BytesIO(EVIL_INDEX))
    refused(server, gzip.compress(raw.getvalue()), f"'../../{EVIL_SHA}'")


def test_gnu_long_name_that_climbs_out_is_refused(server: Path) -> None:
    name = "objects/" + "x/" * 60 + "../" * 62 + "escaped"
    stream = with_entry(lambda s: Entry(name, EVIL_INDEX))(server)
    refused(server, stream, "refusing tar entry", "escaped")


def test_object_whose_bytes_do_not_match_the_manifest_keeps_nothing(server: Path) -> None:
    # a new, valid object travels first: it is not stored either
    state = server / "state"
    bundle = web_stack(2, state, index=EVIL_INDEX, switcher_patch={"activate/zz.py": b"# new\n"})
    new_sha = sha256(b"# new\n")
    forged = {**bundle.objects(), EVIL_SHA: EVIL_INDEX.upper()}  # same size, other bytes
    ordered = dict(sorted(forged.items(), key=lambda kv: (kv[0] == EVIL_SHA, kv[0] != new_sha)))
    assert next(iter(ordered)) == new_sha and list(ordered)[-1] == EVIL_SHA
    stream = tar_stream(bundle, objects=ordered)
    refused(server, stream, f"objects/{EVIL_SHA} has sha256", "not the one its name claims")
    have = switcher("have", state, server / "root", stdin=json.dumps([new_sha]).encode())
    assert have.data == {"missing": [new_sha]}


def test_object_whose_size_does_not_match_the_manifest_is_refused(server: Path) -> None:
    stream = with_entry(lambda s: Entry(f"objects/{EVIL_SHA}", EVIL_INDEX + b"more"), manifest=True)
    refused(server, stream(server), f"objects/{EVIL_SHA} is {len(EVIL_INDEX) + 4} bytes")


def test_manifest_whose_unit_closure_does_not_match_its_files_is_refused(server: Path) -> None:
    bundle = evil(server / "state")
    bundle.manifest["units"]["web.container"]["closure"] = sha256(b"something else")
    refused(server, tar_stream(finish(bundle)), "units.web.container.closure", "does not match")


def test_manifest_whose_file_hash_is_not_what_the_units_were_built_from(server: Path) -> None:
    # the manifest names other bytes for the page than the ones the unit's closure covers
    bundle = evil(server / "state")
    bundle.manifest["files"]["files/web/index.html"]["sha256"] = sha256(b"hello\n")
    refused(server, tar_stream(finish(bundle)), "units.web.container.closure")


@pytest.mark.parametrize(
    "path", ["../../etc/cron.d/evil", "/etc/cron.d/evil", "files/./x", "files//x", "a\\..\\x"]
)
def test_manifest_with_a_path_that_escapes_the_generation_is_refused(
    server: Path, path: str
) -> None:
    bundle = evil(server / "state")
    bundle.manifest["files"][path] = {"sha256": EVIL_SHA, "size": len(EVIL_INDEX), "mode": "0644"}
    refused(server, tar_stream(finish(bundle)), "unsafe path")


def test_manifest_with_a_unit_name_that_escapes_the_unit_folder_is_refused(server: Path) -> None:
    bundle = evil(server / "state")
    unit = dict(bundle.manifest["units"]["web.container"])
    unit["path"] = "units/quadlet/../../../etc/evil.container"
    bundle.manifest["units"]["../../../etc/evil.container"] = unit
    refused(server, tar_stream(finish(bundle)), "units.../../../etc/evil.container")


def test_stream_that_goes_on_past_the_archive_is_refused(server: Path) -> None:
    # a valid archive, then 64 MiB of zeros inside the same gzip member (64 KiB on the wire)
    bundle = evil(server / "state")
    raw = gzip.decompress(tar_stream(bundle))
    stream = gzip.compress(raw + bytes(64 << 20), compresslevel=6, mtime=0)
    assert len(stream) < 200_000
    refused(server, stream, "expands past", "more than the manifest declares")


def test_object_that_expands_a_thousandfold_is_refused(server: Path) -> None:
    # the manifest honestly declares a 256 MiB file of zeros; gzip makes it 256 KiB
    big = bytes(256 << 20)
    state = server / "state"
    bundle = web_stack(2, state, index=EVIL_INDEX)
    bundle.files["files/web/big.bin"] = (big, 0o644)
    bundle.manifest["files"]["files/web/big.bin"] = {
        "sha256": sha256(big),
        "size": len(big),
        "mode": "0644",
    }
    finish(bundle)
    stream = tar_stream(bundle)
    assert len(stream) < 1 << 20
    refused(server, stream, "expands more than 200 times", "compression bomb")
