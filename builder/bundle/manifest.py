"""The manifest a build writes: the rendered stack as an activate.manifest_format.Manifest.

The type, its JSON form and its hashes are the switcher's own (activate/manifest_format.py), so
what the builder writes is exactly what the switcher reads.
"""

from __future__ import annotations

from types import MappingProxyType

from activate import manifest_format
from activate.manifest_format import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    RenderedFile,
    SecretUse,
    bundle_hash,
    dump,
    sha256,
)
from builder.render.output import BundleFile, Rendered

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "build_manifest",
    "bundle_hash",
    "dump",
    "sha256",
]

# the oldest podman whose quadlet understands each unit kind
PODMAN_FOR_KIND = {"container": "4.4", "volume": "4.4", "network": "4.4", "pod": "5.0"}


def file_entry(path: str, f: BundleFile) -> FileEntry:
    return FileEntry(path, sha256(f.data), len(f.data), f.mode)


def build_manifest(
    host: str,
    state_dir: str,
    rendered: Rendered,
    switcher_files: dict[str, BundleFile],
    deploy: dict[str, int] | None = None,
    rootless_user: str | None = None,
) -> Manifest:
    """The sealed manifest as generation 0 without a parent (see `Manifest.stamped`)."""
    all_files = {**rendered.files, **switcher_files}
    files = {path: file_entry(path, f) for path, f in sorted(all_files.items())}
    switcher = manifest_format.closure_hash((p, files[p].sha256) for p in switcher_files)
    kinds = {u.kind for u in rendered.units.values()}
    needed = max(
        (PODMAN_FOR_KIND[k] for k in kinds if k in PODMAN_FOR_KIND), key=_version_key, default=None
    )
    # names, keyed fingerprints and the files completed on the server (docs/secrets.md)
    secrets = {
        name: SecretUse(name, e["fingerprint"], e["podman_secret"], tuple(e["used_by"]))
        for name, e in rendered.secrets.items()
    }
    completed = {
        path: RenderedFile(path, e["id"], tuple(e["secrets"]), files[path].mode)
        for path, e in rendered.rendered.items()
    }
    return Manifest(
        generation=0,
        parent=None,
        host=host,
        built_at="",
        state_dir=state_dir,
        switcher=switcher,
        requires=MappingProxyType({"podman": needed} if needed else {}),
        files=MappingProxyType(files),
        units=MappingProxyType({key: u.closed(files) for key, u in rendered.units.items()}),
        images=MappingProxyType(dict(rendered.images)),
        deploy=MappingProxyType(dict(deploy or {})),
        rootless_user=rootless_user or None,
        secrets=MappingProxyType(secrets),
        rendered=MappingProxyType(completed),
        hooks=rendered.hooks,
    ).sealed()


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))
