"""Push a generation: send only the files the server lacks, in one compressed stream.

The server verifies every object's sha256 and registers the generation only when it is
complete (activate/receive.py), so an interrupted push leaves nothing half-registered and the
next push sends what is still missing.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import attrs

from builder import progress
from builder.progress import PushProgress
from builder.remote import Server
from builder.store import Generation


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

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def switcher_of(gen: Generation, manifest: dict[str, Any]) -> dict[str, bytes]:
    return {p: gen.read(p) for p in manifest["files"] if p.startswith("activate/")}


def stream(gen: Generation, manifest: dict[str, Any], missing: set[str]) -> bytes:
    """gzip tar: manifest.json first, then objects/<sha256> for each missing object."""
    by_hash: dict[str, str] = {}
    for path, entry in sorted(manifest["files"].items()):
        by_hash.setdefault(entry["sha256"], path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=6) as tar:
        _add(tar, "manifest.json", gen.read("manifest.json"))
        for digest in sorted(missing):
            _add(tar, f"objects/{digest}", gen.read(by_hash[digest]))
    return raw.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def push(server: Server, gen: Generation) -> PushReport:
    manifest = gen.manifest()
    switcher_hash = manifest["switcher"]
    before = server.bytes_sent
    sent_switcher = server.ensure_switcher(switcher_hash, switcher_of(gen, manifest))
    cwd = server.switcher_dir(switcher_hash)
    hashes = sorted({e["sha256"] for e in manifest["files"].values()})
    missing = set(server.call("have", cwd=cwd, stdin=json.dumps(hashes).encode())["missing"])
    data = stream(gen, manifest, missing)
    body: bytes | PushProgress = data
    if progress.ENABLED:
        body = PushProgress(data, f"{server.host}: pushing generation {gen.number}", len(missing))
    received = server.call("receive", cwd=cwd, stdin=body)
    return PushReport(
        host=server.host,
        generation=gen.number,
        hash=received.get("hash", ""),
        files=len(manifest["files"]),
        objects_total=len(hashes),
        objects_sent=len(missing),
        bytes_sent=server.bytes_sent - before,
        already_present=bool(received.get("already_present")),
        switcher_sent=sent_switcher,
    )
