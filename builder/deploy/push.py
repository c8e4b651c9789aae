"""Push a generation: send only the files the server lacks, in one compressed stream.

The bootstrap check (builder/deploy/remote.py) installs the bundle's switcher if needed and lists the
server's generations. A generation already there is not sent again. Otherwise, when the
bundle's switcher reads deltas (its bundle carries activate/delta.py), the push names a
generation both sides have as its base (the parent, else the nearest one): `have` is asked
only about the hashes the base lacks, and the manifest travels as its changes against the
base's (manifest.delta.json), which the server rebuilds and checks byte for byte before it
reads any object. The switcher's own files never travel twice: the server takes them from the
switcher installed for this push. Without a usable base, or when the server refuses the
delta, the full manifest is sent.

The server verifies every object's sha256 and registers the generation only when it is
complete (activate/receive.py), so an interrupted push leaves nothing half-registered and the
next push sends what is still missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from typing import Any

import attrs

from activate.delta import DELTA_FORMAT, DELTA_NAME, manifest_bytes, parse_delta, rebuild
from activate.errors import BadInput
from activate.manifest_format import Manifest
from activate.protocol import HaveReply, HaveRequest, Received
from builder.bundle.store import Generation, Store
from builder.deploy import progress
from builder.deploy.progress import PushProgress
from builder.deploy.remote import RemoteError, Server
from builder.deploy.session import SESSION_MARKER

# A bundle whose switcher has this file understands `have` with a base and receives deltas.
DELTA_MARKER = "activate/delta.py"


@attrs.frozen
class PushReport:
    host: str
    generation: int
    hash: str
    files: int
    objects_total: int
    objects_sent: int
    bytes_sent: int
    already_present: bool
    switcher_sent: bool
    base: str | None = None  # the generation the manifest was sent against; None: sent whole
    switcher_repaired: str | None = None  # what was wrong with the installed switcher
    channels: int = 0  # remote commands started (SSH channels); one when served in a session

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Sent:
    """What one push put on the wire after the switcher check."""

    received: Received
    objects: int
    base: str | None


def switcher_of(gen: Generation, manifest: Manifest) -> dict[str, bytes]:
    return {p: gen.read(p) for p in manifest.files if p.startswith("activate/")}


def hashes_of(manifest: Manifest) -> list[str]:
    return sorted({e.sha256 for e in manifest.files.values()})


def stream(
    gen: Generation, manifest: Manifest, missing: set[str], delta: bytes | None = None
) -> bytes:
    """gzip tar: manifest.json (or the delta) first, then objects/<sha256> for each missing
    object."""
    by_hash: dict[str, str] = {}
    for path, entry in sorted(manifest.files.items()):
        by_hash.setdefault(entry.sha256, path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=6) as tar:
        if delta is None:
            _add(tar, "manifest.json", gen.read("manifest.json"))
        else:
            _add(tar, DELTA_NAME, delta)
        for digest in sorted(missing):
            _add(tar, f"objects/{digest}", gen.read(by_hash[digest]))
    return raw.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _same(a: Any, b: Any) -> bool:
    # JSON equality: Python's == says 1 == True, the manifest's bytes do not
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The delta's body: top-level keys set or unset, entries of tables changed or removed."""
    body: dict[str, Any] = {"set": {}, "unset": sorted(old.keys() - new.keys())}
    body.update(entries={}, removed={})
    for key, value in sorted(new.items()):
        before = old.get(key)
        if isinstance(before, dict) and isinstance(value, dict):
            changed = {k: v for k, v in value.items() if k not in before or not _same(before[k], v)}
            gone = sorted(before.keys() - value.keys())
            if changed:
                body["entries"][key] = changed
            if gone:
                body["removed"][key] = gone
        elif key not in old or not _same(before, value):
            body["set"][key] = value
    return {k: v for k, v in body.items() if v}


def manifest_delta(base: Generation, gen: Generation) -> bytes | None:
    """gen's manifest as a delta against base's; None unless it rebuilds, with the switcher's
    own code, to exactly the bytes of gen's manifest.json."""
    # the JSON as written, not the typed manifest: the delta must rebuild these very bytes
    old, new = base.manifest(), gen.manifest()
    data = gen.read("manifest.json")
    if manifest_bytes(new) != data:
        return None  # written by another builder: its bytes could not be rebuilt
    digest = hashlib.sha256(data).hexdigest()
    delta = {"delta": DELTA_FORMAT, "base": base.name, "manifest_sha256": digest}
    encoded = json.dumps(
        {**delta, **changes(old, new)}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    try:
        rebuild(old, parse_delta(encoded))
    except BadInput:
        return None
    return encoded


def choose_base(gen: Generation, parent: int | None, on_server: Iterable[str]) -> Generation | None:
    """A generation both sides have: the parent if the server has it, else the nearest."""
    names = set(on_server)
    local = Store(gen.path.parent.parent, gen.host).generations()
    shared = [g for g in local if g.name in names and g.number != gen.number]
    if not shared:
        return None
    return min(shared, key=lambda g: (g.number != parent, abs(g.number - gen.number), g.number))


def have_request(base: str | None, hashes: Iterable[str]) -> bytes:
    """`have`'s stdin for a switcher that reads deltas: the base, and the hashes it lacks."""
    request = HaveRequest(base=base, hashes=tuple(hashes))
    return json.dumps(request.to_json(), separators=(",", ":")).encode()


def _receive(server: Server, cwd: str, gen: Generation, data: bytes, objects: int) -> Received:
    body: bytes | PushProgress = data
    if progress.ENABLED:
        body = PushProgress(data, f"{server.host}: pushing generation {gen.number}", objects)
    return server.call("receive", reply=Received, cwd=cwd, stdin=body)


def _send_whole(server: Server, cwd: str, gen: Generation, manifest: Manifest) -> Sent:
    """The full manifest, and the objects `have` says the server lacks."""
    hashes = hashes_of(manifest)
    if DELTA_MARKER in manifest.files:
        answer = server.call("have", reply=HaveReply, cwd=cwd, stdin=have_request(None, hashes))
    else:  # a switcher that predates bases: it reads only a list
        answer = server.call("have", reply=HaveReply, cwd=cwd, stdin=json.dumps(hashes).encode())
    missing = set(answer.missing)
    received = _receive(server, cwd, gen, stream(gen, manifest, missing), len(missing))
    return Sent(received, len(missing), None)


def _send_delta(
    server: Server, cwd: str, gen: Generation, manifest: Manifest, on_server: frozenset[str]
) -> Sent | None:
    """The manifest against a base the server has; None when there is none to use."""
    base = choose_base(gen, manifest.parent, on_server)
    delta = manifest_delta(base, gen) if base is not None else None
    if base is None or delta is None:
        return None
    asked = set(hashes_of(manifest)) - set(hashes_of(base.load_manifest()))
    answer = server.call("have", reply=HaveReply, cwd=cwd, stdin=have_request(base.name, asked))
    if answer.base != base.name:
        return None  # gone since the check, or damaged there
    missing = set(answer.missing)
    try:
        received = _receive(server, cwd, gen, stream(gen, manifest, missing, delta), len(missing))
    except RemoteError as exc:
        if DELTA_NAME not in str(exc):
            raise
        return None  # the server's copy of the base rebuilt to other bytes: send it whole
    return Sent(received, len(missing), base.name)


def push(server: Server, gen: Generation) -> PushReport:
    manifest = gen.load_manifest()
    switcher_hash = manifest.switcher
    before, channels = server.bytes_sent, server.channels
    if SESSION_MARKER in manifest.files:  # one remote Python for the rest of this deploy
        found = server.open_session(switcher_hash, switcher_of(gen, manifest))
        server.serve(server.generation_dir(gen.name))
    else:
        found = server.ensure_switcher(switcher_hash, switcher_of(gen, manifest))
    cwd = server.switcher_dir(switcher_hash)
    sent: Sent | None = None
    if gen.name in found.generations:
        sent = Sent(Received(hash="", already_present=True), 0, None)
    elif DELTA_MARKER in manifest.files:
        sent = _send_delta(server, cwd, gen, manifest, found.generations)
    if sent is None:
        sent = _send_whole(server, cwd, gen, manifest)
    return PushReport(
        host=server.host,
        generation=gen.number,
        hash=sent.received.hash or manifest.hash,
        files=len(manifest.files),
        objects_total=len(hashes_of(manifest)),
        objects_sent=sent.objects,
        bytes_sent=server.bytes_sent - before,
        already_present=sent.received.already_present,
        switcher_sent=found.switcher_sent,
        base=sent.base,
        switcher_repaired=found.repaired,
        channels=server.channels - channels,
    )
