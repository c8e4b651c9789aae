"""receive and have: a pushed stream becomes a whole generation or nothing."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

from .conftest import web_stack
from .switcherkit import Entry, finish, push, sha256, switcher, tar_stream


def registered(state: Path) -> list[str]:
    folder = state / "generations"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def missing(state: Path, root: Path, shas: list[str]) -> list[str]:
    r = switcher("have", state, root, stdin=json.dumps(shas).encode())
    assert r.rc == 0, r
    return r.data["missing"]


def test_push_creates_a_complete_read_only_generation(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    assert sorted(missing(state, root, sorted(bundle.objects()))) == sorted(bundle.objects())

    r = push(bundle, state, root)

    assert r.rc == 0, r
    assert r.data == {
        "generation": 1,
        "hash": bundle.hash,
        "objects_received": len(bundle.objects()),
        "bytes_received": sum(len(d) for d in bundle.objects().values()),
        "already_present": False,
    }
    assert registered(state) == [bundle.folder]
    gen = state / "generations" / bundle.folder
    assert (gen / "manifest.json").read_bytes() == bundle.manifest_bytes
    for path, (data, mode) in bundle.files.items():
        st = (gen / path).stat()
        assert (gen / path).read_bytes() == data
        assert stat.S_IMODE(st.st_mode) == mode & 0o555  # the manifest's mode, read-only
    # Files share the object's inode: a generation costs no extra space.
    index_sha = sha256(b"hello\n")
    assert (gen / "files/web/index.html").stat().st_ino == (
        state / "objects" / index_sha[:2] / index_sha
    ).stat().st_ino
    assert stat.S_IMODE((gen / "files").stat().st_mode) == 0o555
    assert missing(state, root, sorted(bundle.objects())) == []
    assert list((state / "incoming").iterdir()) == []


def test_pushing_the_same_generation_again_says_already_present(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    assert push(bundle, state, root).rc == 0

    again = push(bundle, state, root)
    full_again = switcher("receive", state, root, stdin=tar_stream(bundle))

    assert again.rc == 0 and again.data["already_present"] is True, again
    assert again.data["objects_received"] == 0
    assert full_again.rc == 0 and full_again.data["already_present"] is True, full_again
    assert registered(state) == [bundle.folder]


def test_second_generation_sends_only_new_objects(state: Path, root: Path) -> None:
    first, second = web_stack(1, state), web_stack(2, state, index=b"changed\n")
    assert push(first, state, root).rc == 0

    assert missing(state, root, sorted(second.objects())) == [sha256(b"changed\n")]
    r = push(second, state, root)

    assert r.rc == 0, r
    assert r.data["objects_received"] == 1
    assert len(registered(state)) == 2


def test_object_whose_bytes_do_not_match_its_name_is_refused(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    forged = dict(bundle.objects())
    index_sha = sha256(b"hello\n")
    forged[index_sha] = b"HELLO\n"  # same size, other bytes

    r = switcher("receive", state, root, stdin=tar_stream(bundle, objects=forged))

    assert r.rc == 2, r
    assert "sha256" in r.stderr and index_sha in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert registered(state) == []
    assert index_sha in missing(state, root, [index_sha])


def test_manifest_whose_unit_closure_is_wrong_is_refused(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    bundle.manifest["units"]["web.container"]["closure"] = "0" * 64
    finish(bundle)

    r = switcher("receive", state, root, stdin=tar_stream(bundle))

    assert r.rc == 2, r
    assert "units.web.container.closure" in r.stderr
    assert registered(state) == []


def test_entry_with_dotdot_is_refused(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)

    r = switcher("receive", state, root, stdin=tar_stream(bundle, extra=[Entry("../x", b"evil")]))

    assert r.rc == 2, r
    assert "'../x'" in r.stderr
    assert not (state.parent / "x").exists()
    assert registered(state) == []


def test_links_folders_and_absolute_paths_are_refused(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    index_sha = sha256(b"hello\n")
    bad = [
        Entry(f"objects/{index_sha}", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        Entry(f"objects/{index_sha}", type=tarfile.LNKTYPE, linkname="manifest.json"),
        Entry("objects", type=tarfile.DIRTYPE),
        Entry("/etc/cron.d/x", b"* * * * * root sh\n"),
        Entry(f"objects/{index_sha}/../../x", b"hello\n"),
        Entry("dev", type=tarfile.CHRTYPE),
    ]
    for entry in bad:
        stream = tar_stream(bundle, only=[], extra=[entry])
        r = switcher("receive", state, root, stdin=stream)
        assert r.rc == 2, (entry, r)
        assert "refusing tar entry" in r.stderr
    assert registered(state) == []
    assert not (state.parent / "x").exists()


def test_objects_must_come_after_the_manifest(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)

    r = switcher("receive", state, root, stdin=tar_stream(bundle, manifest_last=True))

    assert r.rc == 2, r
    assert "manifest must come first" in r.stderr


def test_object_bigger_than_declared_is_refused_before_it_is_read(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    index_sha = sha256(b"hello\n")
    big = Entry(f"objects/{index_sha}", b"x" * 10_000_000)

    r = switcher("receive", state, root, stdin=tar_stream(bundle, only=[], extra=[big]))

    assert r.rc == 2, r
    assert "10000000 bytes" in r.stderr
    assert registered(state) == []


def test_object_not_in_the_manifest_is_refused(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    stray = Entry(f"objects/{sha256(b'stray')}", b"stray")

    r = switcher("receive", state, root, stdin=tar_stream(bundle, only=[], extra=[stray]))

    assert r.rc == 2, r
    assert "not a file of generation 1" in r.stderr


def test_cut_stream_registers_nothing_and_the_next_push_completes(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)
    stream = tar_stream(bundle)

    cut = switcher("receive", state, root, stdin=stream[: len(stream) * 2 // 3])

    assert cut.rc == 1, cut
    assert "push again" in cut.stderr
    assert registered(state) == []
    assert list((state / "incoming").iterdir()) == []
    # Whatever arrived intact counts as present, so the retry sends only the rest.
    still_missing = missing(state, root, sorted(bundle.objects()))
    assert len(still_missing) < len(bundle.objects())

    retry = push(bundle, state, root)

    assert retry.rc == 0, retry
    assert retry.data["objects_received"] == len(still_missing)
    assert registered(state) == [bundle.folder]


def test_missing_objects_leave_nothing_registered(state: Path, root: Path) -> None:
    bundle = web_stack(1, state)

    r = switcher("receive", state, root, stdin=tar_stream(bundle, only=[]))

    assert r.rc == 1, r
    assert "ask `have` and push again" in r.stderr
    assert registered(state) == []


def test_same_generation_number_with_other_content_is_refused(state: Path, root: Path) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = push(web_stack(1, state, index=b"other\n"), state, root)

    assert r.rc == 2, r
    assert "build a new generation" in r.stderr
    assert len(registered(state)) == 1


def test_have_refuses_anything_but_a_list_of_sha256(state: Path, root: Path) -> None:
    for stdin in (b"{}", b"not json", json.dumps(["../../etc/passwd"]).encode()):
        r = switcher("have", state, root, stdin=stdin)
        assert r.rc == 2, r
        assert len(r.stderr.strip().splitlines()) == 1


def test_stale_staging_from_a_killed_receive_is_cleared(state: Path, root: Path) -> None:
    (state / "incoming" / "receive-dead" / "1-abc").mkdir(parents=True)
    os.chmod(state / "incoming" / "receive-dead" / "1-abc", 0o555)

    r = push(web_stack(1, state), state, root)

    assert r.rc == 0, r
    assert list((state / "incoming").iterdir()) == []
