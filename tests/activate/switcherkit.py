"""Build test bundles the way docs/architecture.md says, and run the switcher as a process.

Hashes are computed here from the architecture document, not with the switcher's own code,
so a test fails if the two disagree.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
QUADLET_KINDS = ("container", "pod", "volume", "network")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def service_of(key: str) -> str:
    stem, kind = key.rsplit(".", 1)
    return {
        "container": f"{stem}.service",
        "pod": f"{stem}-pod.service",
        "volume": f"{stem}-volume.service",
        "network": f"{stem}-network.service",
    }.get(kind, key)


def unit_path(key: str) -> str:
    kind = key.rsplit(".", 1)[1]
    return f"units/{'quadlet' if kind in QUADLET_KINDS else 'systemd'}/{key}"


def switcher_files() -> dict[str, bytes]:
    """The repository's switcher, as it travels inside every bundle."""
    return {f"activate/{p.name}": p.read_bytes() for p in sorted((REPO / "activate").glob("*.py"))}


@dataclass(frozen=True)
class U:
    """A unit for a test bundle: its text and the manifest fields the builder would fill."""

    text: str
    requires: tuple[str, ...] = ()
    enable: bool = True
    image: str | None = None
    refs: tuple[str, ...] = ()  # other bundle files the unit's closure covers
    reload: tuple[str, ...] | None = None  # its refs mounted from STATE/live (reloadable)


@dataclass
class Bundle:
    manifest: dict[str, Any]
    files: dict[str, tuple[bytes, int]]
    manifest_bytes: bytes = b""
    hash: str = ""

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def folder(self) -> str:
        return f"{self.generation}-{self.hash[:12]}"

    def objects(self) -> dict[str, bytes]:
        return {sha256(data): data for data, _mode in self.files.values()}


def make_bundle(
    generation: int,
    state_dir: Path | str,
    units: Mapping[str, U],
    files: Mapping[str, bytes | tuple[bytes, int]] | None = None,
    *,
    parent: int | None = None,
    with_switcher: bool = True,
    requires: Mapping[str, str] | None = None,
    host: str = "testhost",
    switcher_patch: Mapping[str, bytes] | None = None,
) -> Bundle:
    tree: dict[str, tuple[bytes, int]] = {}
    for path, value in (files or {}).items():
        tree[path] = value if isinstance(value, tuple) else (value, 0o644)
    if with_switcher:
        code = {**switcher_files(), **(switcher_patch or {})}
        tree.update({p: (data, 0o644) for p, data in code.items()})
    for key, u in units.items():
        tree[unit_path(key)] = (u.text.encode(), 0o644)
    file_entries = {
        p: {"sha256": sha256(data), "size": len(data), "mode": f"{mode:04o}"}
        for p, (data, mode) in sorted(tree.items())
    }
    unit_entries = {}
    for key, u in units.items():
        own = unit_path(key)
        members = sorted({own, *u.refs})
        lines = sorted(f"{p}\0{file_entries[p]['sha256']}\n" for p in members)
        unit_entries[key] = {
            "kind": key.rsplit(".", 1)[1],
            "path": own,
            "service": service_of(key),
            "closure": sha256("".join(lines).encode()),
            "files": members,
            "requires": list(u.requires),
            "image": u.image,
            "enable": u.enable,
        }
        if u.reload is not None:
            unit_entries[key]["reload"] = {"files": list(u.reload)}
    switcher_lines = sorted(
        f"{p}\0{e['sha256']}\n" for p, e in file_entries.items() if p.startswith("activate/")
    )
    manifest = {
        "format": 1,
        "host": host,
        "generation": generation,
        "parent": parent,
        "built_at": f"2026-11-25T15:{generation % 60:02d}:00Z",
        "state_dir": str(state_dir),
        "switcher": sha256("".join(switcher_lines).encode()),
        "requires": dict(requires or {"podman": "5.0"}),
        "files": file_entries,
        "units": unit_entries,
        "images": {k.rsplit(".", 1)[0]: u.image for k, u in units.items() if u.image},
    }
    return finish(Bundle(manifest, tree))


def finish(bundle: Bundle) -> Bundle:
    """(Re)compute the manifest bytes and bundle hash after a test edited the manifest."""
    hashed = {
        k: v for k, v in bundle.manifest.items() if k not in ("generation", "parent", "built_at")
    }
    bundle.hash = sha256(canonical(hashed))
    bundle.manifest_bytes = (json.dumps(bundle.manifest, indent=2, sort_keys=True) + "\n").encode()
    return bundle


@dataclass(frozen=True)
class Entry:
    """A raw tar entry, for streams a well-behaved builder would never send."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None


def tar_stream(
    bundle: Bundle | None,
    only: Iterable[str] | None = None,
    *,
    extra: Iterable[Entry] = (),
    objects: Mapping[str, bytes] | None = None,
    manifest_last: bool = False,
) -> bytes:
    """gzip tar: manifest.json then objects/<sha> (all, or only those in `only`)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(entry: Entry) -> None:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.size = len(entry.data) if entry.size is None else entry.size
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(entry.data) if info.isreg() else None)

        entries: list[Entry] = []
        if bundle is not None:
            chosen = bundle.objects() if objects is None else dict(objects)
            if only is not None:
                wanted = set(only)
                chosen = {k: v for k, v in chosen.items() if k in wanted}
            entries = [Entry(f"objects/{sha}", data) for sha, data in sorted(chosen.items())]
            manifest = Entry("manifest.json", bundle.manifest_bytes)
            entries = [*entries, manifest] if manifest_last else [manifest, *entries]
        for entry in [*entries, *extra]:
            add(entry)
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    data: Any = field(default=None)

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, stderr={self.stderr!r}, stdout={self.stdout[:2000]!r})"


def switcher(
    command: str,
    state: Path,
    root: Path,
    *args: str,
    stdin: bytes = b"",
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
) -> Result:
    """`python3 -m activate COMMAND --state STATE --root ROOT ...`, as the deployer runs it."""
    done = subprocess.run(
        [
            sys.executable,
            "-B",
            "-m",
            "activate",
            command,
            "--state",
            str(state),
            "--root",
            str(root),
            *args,
        ],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=120,
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    try:
        data = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        data = None
    return Result(done.returncode, out, err, data)


def push(bundle: Bundle, state: Path, root: Path) -> Result:
    """have + receive, the way the deployer pushes."""
    have = switcher("have", state, root, stdin=json.dumps(sorted(bundle.objects())).encode())
    assert have.rc == 0, have
    return switcher("receive", state, root, stdin=tar_stream(bundle, have.data["missing"]))
