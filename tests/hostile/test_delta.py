"""A manifest sent as a delta against a generation the server has (manifest.delta.json).

A good delta rebuilds the builder's manifest byte for byte; a delta naming a base the server
lacks, one that rebuilds to other bytes than it claims, and a malformed one are refused like a
hostile archive: one line, exit 2, nothing written outside STATE/incoming/ (then empty again),
no generation registered. The delta is built here from docs/switcher.md, not with the
builder's code. `have` with a base, and objects taken from the switcher's own files, too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.activate.conftest import web_stack
from tests.activate.switcherkit import (
    REPO,
    Bundle,
    Entry,
    finish,
    sha256,
    switcher,
    switcher_files,
    tar_stream,
)
from tests.hostile.test_hostile_bundles import EVIL_INDEX, evil, raw_stream, refused, server

__all__ = ["server"]  # the fixture: generation 1 received


def delta_of(base: Bundle, new: Bundle) -> dict[str, Any]:
    """The delta of new's manifest against base's: changed top-level keys and table entries."""
    old, cur = base.manifest, new.manifest
    delta: dict[str, Any] = {
        "delta": 1,
        "base": base.folder,
        "manifest_sha256": sha256(new.manifest_bytes),
        "set": {},
        "unset": sorted(old.keys() - cur.keys()),
        "entries": {},
        "removed": {},
    }
    for key, value in cur.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            changed = {k: v for k, v in value.items() if old[key].get(k) != v}
            if changed:
                delta["entries"][key] = changed
            if old[key].keys() - value.keys():
                delta["removed"][key] = sorted(old[key].keys() - value.keys())
        elif old.get(key) != value:
            delta["set"][key] = value
    return delta


def delta_stream(delta: Any, new: Bundle, *, raw: bytes | None = None) -> bytes:
    """The delta first, then every object of the new generation the base lacks."""
    data = raw if raw is not None else json.dumps(delta).encode()
    base_objects = set(web_stack(1, Path(new.manifest["state_dir"])).objects())
    objects = [
        Entry(f"objects/{sha}", body)
        for sha, body in sorted(new.objects().items())
        if sha not in base_objects
    ]
    return raw_stream([Entry("manifest.delta.json", data), *objects])


def first_and_evil(server: Path) -> tuple[Bundle, Bundle]:
    state = server / "state"
    return web_stack(1, state), evil(state)


def test_a_delta_rebuilds_the_manifest_byte_for_byte(server: Path) -> None:
    state, root = server / "state", server / "root"
    base, new = first_and_evil(server)
    delta = delta_of(base, new)
    assert set(delta["entries"]) == {"files", "units"}  # the page and the unit that mounts it

    r = switcher("receive", state, root, stdin=delta_stream(delta, new))

    assert r.rc == 0, r
    assert r.data["hash"] == new.hash and r.data["objects_received"] == 1
    assert (state / "generations" / new.folder / "manifest.json").read_bytes() == (
        new.manifest_bytes
    )
    again = switcher("receive", state, root, stdin=delta_stream(delta, new))
    assert again.rc == 0 and again.data["already_present"], again


def test_a_delta_that_removes_entries_and_keys(server: Path) -> None:
    state, root = server / "state", server / "root"
    base = web_stack(1, state)
    new = web_stack(2, state)
    del new.manifest["units"]["backup.timer"]
    del new.manifest["files"]["units/systemd/backup.timer"]
    del new.manifest["images"]["web"]
    new.manifest["units"]["web.container"]["image"] = None
    del new.manifest["requires"]
    new.manifest["deploy"] = {"health_timeout": 5}
    finish(new)
    delta = delta_of(base, new)
    assert delta["removed"] == {
        "files": ["units/systemd/backup.timer"],
        "images": ["web"],
        "units": ["backup.timer"],
    }
    assert delta["unset"] == ["requires"] and "deploy" in delta["set"]

    r = switcher("receive", state, root, stdin=delta_stream(delta, new))

    assert r.rc == 0, r
    assert (state / "generations" / new.folder / "manifest.json").read_bytes() == (
        new.manifest_bytes
    )


def test_a_delta_naming_a_base_the_server_lacks_is_refused(server: Path) -> None:
    base, new = first_and_evil(server)
    delta = {**delta_of(base, new), "base": "7-0123456789ab"}
    refused(
        server, delta_stream(delta, new), "base generation 7-0123456789ab is not on this server"
    )


def test_a_delta_whose_base_has_the_right_number_and_another_hash_is_refused(
    server: Path,
) -> None:
    base, new = first_and_evil(server)
    delta = {**delta_of(base, new), "base": f"1-{'0' * 12}"}
    refused(server, delta_stream(delta, new), f"base generation 1-{'0' * 12} is not on this")


def test_a_delta_that_rebuilds_to_a_manifest_with_another_hash_is_refused(server: Path) -> None:
    base, new = first_and_evil(server)
    delta = {**delta_of(base, new), "manifest_sha256": sha256(b"another manifest")}
    refused(server, delta_stream(delta, new), "does not hash to manifest_sha256")


def test_a_delta_that_leaves_out_a_change_is_refused(server: Path) -> None:
    # it claims the new manifest's hash but would rebuild the old unit with the new page
    base, new = first_and_evil(server)
    delta = delta_of(base, new)
    del delta["entries"]["units"]
    refused(server, delta_stream(delta, new), "does not hash to manifest_sha256")


def test_a_delta_that_rebuilds_a_manifest_the_switcher_refuses(server: Path) -> None:
    # byte for byte what it claims, but the unit escapes its folder: refused as a manifest
    base, new = first_and_evil(server)
    unit = dict(new.manifest["units"]["web.container"])
    unit["path"] = "units/quadlet/../../../etc/evil.container"
    new.manifest["units"]["../../../etc/evil.container"] = unit
    finish(new)
    refused(server, delta_stream(delta_of(base, new), new), "units.../../../etc/evil.container")


def tweak(change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(delta: dict[str, Any]) -> dict[str, Any]:
        change(delta)
        return delta

    return apply


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "not-json": (lambda d: b"{not json", "not valid JSON"),
    "not-utf8": (lambda d: b"\xff\xfe{}", "not valid JSON"),
    "a-list": (lambda d: [d], "expected a JSON object, got a JSON list"),
    "format-2": (tweak(lambda d: d.update(delta=2)), "delta format 1, got 2"),
    "format-true": (tweak(lambda d: d.update(delta=True)), "delta format 1, got True"),
    "no-format": (tweak(lambda d: d.pop("delta")), "delta format 1, got None"),
    "unknown-key": (tweak(lambda d: d.update(patch={})), "unknown key 'patch'"),
    "base-climbs-out": (tweak(lambda d: d.update(base="../../etc")), "base '../../etc'"),
    "base-missing": (tweak(lambda d: d.pop("base")), "base None"),
    "sha-not-hex": (tweak(lambda d: d.update(manifest_sha256="X" * 64)), "manifest_sha256"),
    "set-not-object": (tweak(lambda d: d.update(set=[1])), "set must be a JSON object"),
    "entries-not-object": (
        tweak(lambda d: d.update(entries={"files": []})),
        "entries.files must be a JSON object",
    ),
    "removed-not-list": (
        tweak(lambda d: d.update(removed={"files": "units/quadlet/web.container"})),
        "removed.files must be a list of strings",
    ),
    "removed-twice": (
        tweak(lambda d: d.update(removed={"images": ["web", "web"]})),
        "removed.images names a key twice",
    ),
    "removed-unknown": (
        tweak(lambda d: d.update(removed={"files": ["files/nothere"]})),
        "removed.files names 'files/nothere', which the base does not have",
    ),
    "unset-unknown": (
        tweak(lambda d: d.update(unset=["nothere"])),
        "unset names 'nothere', which the base's manifest does not have",
    ),
    "table-not-in-base": (
        tweak(lambda d: d.update(entries={**d["entries"], "nothere": {"a": 1}})),
        "nothere is not a table of the base's manifest",
    ),
    "table-is-a-string": (
        tweak(lambda d: d.update(entries={**d["entries"], "host": {"a": 1}})),
        "host is not a table of the base's manifest",
    ),
    "set-and-entries": (
        tweak(lambda d: d["set"].update(files={})),
        "key 'files' is changed twice",
    ),
    "changed-and-removed": (
        tweak(lambda d: d.update(removed={"files": ["files/web/index.html"]})),
        "files.files/web/index.html is both changed and removed",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_delta_is_refused(server: Path, case: str) -> None:
    base, new = first_and_evil(server)
    make, fragment = MALFORMED[case]
    made = make(delta_of(base, new))
    raw = made if isinstance(made, bytes) else json.dumps(made).encode()
    refused(server, delta_stream(None, new, raw=raw), "manifest.delta.json", fragment)


def test_a_delta_and_a_manifest_in_one_stream_are_refused(server: Path) -> None:
    base, new = first_and_evil(server)
    delta = Entry("manifest.delta.json", json.dumps(delta_of(base, new)).encode())
    stream = raw_stream([delta, Entry("manifest.json", new.manifest_bytes)])
    refused(server, stream, "holds a manifest twice")


def test_an_object_before_the_delta_is_refused(server: Path) -> None:
    base, new = first_and_evil(server)
    delta = Entry("manifest.delta.json", json.dumps(delta_of(base, new)).encode())
    stream = raw_stream([Entry(f"objects/{sha256(EVIL_INDEX)}", EVIL_INDEX), delta])
    refused(server, stream, "arrived before manifest.json")


# ---- have with a base, and the switcher's own files ---------------------------------------------


def have(server: Path, request: Any) -> Any:
    r = switcher("have", server / "state", server / "root", stdin=json.dumps(request).encode())
    assert r.rc == 0, r
    return r.data


def test_have_with_a_base_says_whether_the_base_can_serve(server: Path) -> None:
    base = web_stack(1, server / "state")
    asked = [sha256(EVIL_INDEX)]
    assert have(server, {"base": base.folder, "hashes": asked}) == {
        "base": base.folder,
        "missing": asked,
    }
    assert have(server, {"base": "1-0123456789ab", "hashes": asked}) == {
        "base": None,
        "missing": asked,
    }
    # a base whose objects are not all stored any more cannot serve
    page = server / "state/objects" / sha256(b"hello\n")[:2] / sha256(b"hello\n")
    page.unlink()
    assert have(server, {"base": base.folder, "hashes": asked})["base"] is None


def test_have_counts_the_switchers_own_files_as_present(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    own = sorted({sha256(d) for d in switcher_files().values()})
    page = sha256(b"hello\n")
    answer = have(tmp_path, {"base": None, "hashes": [*own, page]})
    assert answer == {"base": None, "missing": [page]}
    # the first form, a plain list, asks about the object store alone
    r = switcher("have", state, root, stdin=json.dumps([*own, page]).encode())
    assert sorted(r.data["missing"]) == sorted([*own, page])


@pytest.mark.parametrize(
    "request_",
    [{"hashes": "abc"}, {"base": "../x", "hashes": []}, {"base": None}, {"x": 1, "hashes": []}],
)
def test_have_refuses_a_malformed_request(tmp_path: Path, request_: Any) -> None:
    (tmp_path / "root").mkdir()
    r = switcher("have", tmp_path / "state", tmp_path / "root", stdin=json.dumps(request_).encode())
    assert r.rc == 2 and len(r.stderr.strip().splitlines()) == 1, r


def test_receive_takes_the_switchers_own_files_from_its_folder(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    bundle = web_stack(1, state)
    own = {sha256(d) for d in switcher_files().values()}
    stream = tar_stream(bundle, only=set(bundle.objects()) - own)

    r = switcher("receive", state, root, stdin=stream, cwd=REPO)

    assert r.rc == 0, r
    assert r.data["objects_received"] == len(set(bundle.objects()) - own)
    gen = state / "generations" / bundle.folder
    for path, (data, _mode) in bundle.files.items():
        assert (gen / path).read_bytes() == data
    for sha in own:
        assert (state / "objects" / sha[:2] / sha).read_bytes() == bundle.objects()[sha]


def test_receive_takes_nothing_from_its_folder_when_other_objects_are_missing(
    tmp_path: Path,
) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    bundle = web_stack(1, state)

    r = switcher("receive", state, root, stdin=tar_stream(bundle, only=[]))

    assert r.rc == 1 and "ask `have` and push again" in r.stderr, r
    assert [p for p in (state / "objects").rglob("*") if p.is_file()] == []
