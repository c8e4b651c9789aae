"""The manifest: what a generation contains, and the hashes that identify it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from builder.render.output import BundleFile, Rendered

FORMAT = 1
# fields that say when and in which order a bundle was built, not what it is
VOLATILE = ("generation", "parent")

# the oldest podman whose quadlet understands each unit kind
PODMAN_FOR_KIND = {"container": "4.4", "volume": "4.4", "network": "4.4", "pod": "5.0"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def closure_hash(paths: list[str] | tuple[str, ...], files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{p}\0{files[p]['sha256']}\n" for p in sorted(paths))
    return sha256(lines.encode())


def file_entry(f: BundleFile) -> dict[str, Any]:
    return {"sha256": sha256(f.data), "size": len(f.data), "mode": f"{f.mode:04o}"}


def build_manifest(
    host: str,
    state_dir: str,
    rendered: Rendered,
    switcher_files: dict[str, BundleFile],
    deploy: dict[str, int] | None = None,
    rootless_user: str | None = None,
) -> dict[str, Any]:
    """The manifest without generation, parent and build time (see `stamp`)."""
    all_files = {**rendered.files, **switcher_files}
    files = {path: file_entry(f) for path, f in sorted(all_files.items())}
    switcher = closure_hash(sorted(switcher_files), files)
    units = {}
    for key, u in rendered.units.items():
        units[key] = {
            "kind": u.kind,
            "path": u.path,
            "service": u.service,
            "closure": closure_hash(u.files, files),
            "files": list(u.files),
            "requires": list(u.requires),
            "image": u.image,
            "enable": u.enable,
        }
        if u.checks:
            units[key]["checks"] = [dict(c) for c in u.checks]
        if u.state is not None:
            units[key]["state"] = dict(u.state)
    kinds = {u.kind for u in rendered.units.values()}
    needed = max(
        (PODMAN_FOR_KIND[k] for k in kinds if k in PODMAN_FOR_KIND), key=_version_key, default=None
    )
    body = {
        "format": FORMAT,
        "host": host,
        "state_dir": state_dir,
        "switcher": switcher,
        "requires": {"podman": needed} if needed else {},
        "files": files,
        "units": units,
        "images": dict(rendered.images),
        **({"deploy": dict(deploy)} if deploy is not None else {}),
        **({"rootless_user": rootless_user} if rootless_user else {}),
    }
    # names, keyed fingerprints and the files completed on the server (docs/secrets.md)
    if rendered.secrets:
        body["secrets"] = dict(rendered.secrets)
    if rendered.rendered:
        body["rendered"] = dict(rendered.rendered)
    return body


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def bundle_hash(manifest: dict[str, Any]) -> str:
    return sha256(canonical({k: v for k, v in manifest.items() if k not in VOLATILE}))


def stamp(manifest: dict[str, Any], generation: int, parent: int | None) -> dict[str, Any]:
    return {**manifest, "generation": generation, "parent": parent}


def dump(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
