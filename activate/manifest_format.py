"""manifest.json, format 1 (docs/architecture.md): its typed values, its JSON form, its hashes.

The one model of a generation's manifest: the builder constructs these values and writes them
with `dump`; the switcher reads them back with activate/manifest.py (`parse_manifest`). Standard
library only, like all of activate/: this module travels inside every bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

FORMAT = 1
MANIFEST_NAME = "manifest.json"
# left out of the bundle hash: when and in which order a bundle was built, not what it is
VOLATILE_KEYS = ("generation", "parent", "built_at")

QUADLET_KINDS = ("container", "pod", "volume", "network")
SYSTEMD_KINDS = ("service", "timer")
KINDS = QUADLET_KINDS + SYSTEMD_KINDS
UNIT_FOLDER = {
    **{k: "units/quadlet" for k in QUADLET_KINDS},
    **{k: "units/systemd" for k in SYSTEMD_KINDS},
}
# quadlet's own naming (podman 5): x.container -> x.service, x.pod -> x-pod.service, ...
SERVICE_SUFFIX = {
    "container": ".service",
    "pod": "-pod.service",
    "volume": "-volume.service",
    "network": "-network.service",
    "service": ".service",
    "timer": ".timer",
}
CHECK_KINDS = ("http", "tcp", "command")


def service_name(name: str, kind: str) -> str:
    """The unit systemctl knows for the unit file NAME.KIND."""
    return name + SERVICE_SUFFIX[kind]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The canonical form of architecture.md: the bytes every hash is computed over."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def bundle_hash(raw: Mapping[str, Any]) -> str:
    """sha256 of the canonical manifest JSON without its volatile keys."""
    return sha256(canonical_json({k: v for k, v in raw.items() if k not in VOLATILE_KEYS}))


def closure_hash(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted lines `path\\0sha256\\n` of a unit's (or the switcher's) files."""
    lines = sorted(f"{path}\0{sha}\n" for path, sha in files)
    return sha256("".join(lines).encode("utf-8"))


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle tree."""

    path: str
    sha256: str
    size: int
    mode: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "mode": f"{self.mode:04o}"}


@dataclass(frozen=True)
class Check:
    """A deploy-time check the switcher runs after activation (activate/health.py)."""

    kind: str  # "http", "tcp" or "command"
    target: str  # the URL, HOST:PORT or shell command
    status: int = 200
    body: str | None = None
    timeout: int = 5

    def describe(self) -> str:
        if self.kind == "http":
            body = f" containing {self.body!r}" if self.body is not None else ""
            return f"GET {self.target} answers {self.status}{body}"
        if self.kind == "tcp":
            return f"{self.target} accepts TCP connections"
        return f"`{self.target}` exits 0"

    def to_json(self) -> dict[str, Any]:
        """The kind's key plus only what applies to it."""
        entry: dict[str, Any] = {self.kind: self.target, "timeout": self.timeout}
        if self.kind == "http":
            entry["status"] = self.status
            if self.body is not None:
                entry["body"] = self.body
        return entry


@dataclass(frozen=True)
class State:
    """What a stateful container keeps: podman volumes, or a dump/restore command pair."""

    container: str
    volumes: tuple[str, ...]
    dump: str | None = None
    restore: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "volumes": list(self.volumes),
            "dump": self.dump,
            "restore": self.restore,
        }


@dataclass(frozen=True)
class Unit:
    """One quadlet or systemd unit of the generation and the bundle files it uses."""

    key: str
    kind: str
    path: str
    service: str
    # sha256 of the unit's files (closure_hash); empty until the bundle's files are hashed
    closure: str
    files: tuple[str, ...]
    requires: tuple[str, ...]
    image: str | None
    enable: bool
    checks: tuple[Check, ...] = ()
    state: State | None = None
    # its config files under STATE/live (activate/live.py): a change of only these reloads it
    reload: tuple[str, ...] | None = None

    @property
    def is_quadlet(self) -> bool:
        return self.kind in QUADLET_KINDS

    def closed(self, files: Mapping[str, FileEntry]) -> Unit:
        """This unit with its closure computed from the bundle's file entries."""
        return replace(self, closure=closure_hash((p, files[p].sha256) for p in set(self.files)))

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": self.kind,
            "path": self.path,
            "service": self.service,
            "closure": self.closure,
            "files": list(self.files),
            "requires": list(self.requires),
            "image": self.image,
            "enable": self.enable,
        }
        if self.checks:
            entry["checks"] = [c.to_json() for c in self.checks]
        if self.state is not None:
            entry["state"] = self.state.to_json()
        if self.reload is not None:
            entry["reload"] = {"files": list(self.reload)}
        return entry


@dataclass(frozen=True)
class SecretUse:
    """A secret the generation needs: its keyed fingerprint (None: not set), never its value."""

    name: str
    fingerprint: str | None
    podman: str | None  # the podman secret's name, NAME-FINGERPRINT12; None: files only
    used_by: tuple[str, ...]

    @property
    def short(self) -> str:
        return (self.fingerprint or "unset")[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "podman_secret": self.podman,
            "used_by": list(self.used_by),
        }


@dataclass(frozen=True)
class RenderedFile:
    """A bundle file the server completes with the secrets it embeds (docs/secrets.md)."""

    path: str
    ident: str
    secrets: tuple[str, ...]
    mode: int  # the file's own mode, from its files entry

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ident, "secrets": list(self.secrets)}


@dataclass(frozen=True)
class Hook:
    """A deploy hook: a shell script of the bundle the switcher runs on the server."""

    phase: str  # "pre" (before anything changes) or "post" (after the health gate)
    path: str  # scripts/hooks/PHASE-N.sh
    command: str  # what the stack says, shown in messages

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "command": self.command}


HOOK_PHASES = ("pre", "post")
HOOK_TIMEOUT = 300  # seconds each hook may take unless [hooks] timeout says otherwise


@dataclass(frozen=True)
class Hooks:
    """The generation's deploy hooks, in the order they run (docs/operations.md)."""

    pre: tuple[Hook, ...] = ()
    post: tuple[Hook, ...] = ()
    timeout: int = HOOK_TIMEOUT

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

    def to_json(self) -> dict[str, Any]:
        return {
            "pre": [h.to_json() for h in self.pre],
            "post": [h.to_json() for h in self.post],
            "timeout": self.timeout,
        }


def _frozen(**entries: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(entries))


@dataclass(frozen=True)
class Manifest:
    """One generation's manifest. Parsed: `hash` is computed from the bytes read, never taken
    from a name. Built: `sealed()` computes it from the JSON form."""

    generation: int
    parent: int | None
    host: str
    built_at: str  # empty in every manifest this builder writes (builds are reproducible)
    state_dir: str
    switcher: str
    requires: Mapping[str, str]
    files: Mapping[str, FileEntry]
    units: Mapping[str, Unit]
    images: Mapping[str, str]
    hash: str = ""
    # health_timeout, health_settle, confirm_timeout (seconds); empty in older manifests
    deploy: Mapping[str, int] = field(default_factory=_frozen)
    # the user a rootless generation runs as (activate/scope.py); None: the system's manager
    rootless_user: str | None = None
    secrets: Mapping[str, SecretUse] = field(default_factory=_frozen)
    rendered: Mapping[str, RenderedFile] = field(default_factory=_frozen)
    hooks: Hooks = field(default_factory=Hooks)  # none: the key is left out

    @property
    def folder_name(self) -> str:
        return f"{self.generation}-{self.hash[:12]}"

    def all_images(self) -> tuple[str, ...]:
        refs = set(self.images.values())
        refs.update(u.image for u in self.units.values() if u.image)
        return tuple(sorted(refs))

    def object_sizes(self) -> dict[str, int]:
        """Distinct objects (sha256 → size) the generation is made of."""
        return {f.sha256: f.size for f in self.files.values()}

    def sealed(self) -> Manifest:
        """This manifest with `hash` computed from its JSON form."""
        return replace(self, hash=bundle_hash(self.to_json()))

    def stamped(self, generation: int, parent: int | None) -> Manifest:
        """Numbered in a host's history; the hash does not change (both keys are volatile)."""
        return replace(self, generation=generation, parent=parent)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT,
            "generation": self.generation,
            "parent": self.parent,
            "host": self.host,
            "state_dir": self.state_dir,
            "switcher": self.switcher,
            "requires": dict(self.requires),
            "files": {path: f.to_json() for path, f in self.files.items()},
            "units": {key: u.to_json() for key, u in self.units.items()},
            "images": dict(self.images),
        }
        optional = {
            "built_at": self.built_at,
            "deploy": dict(self.deploy),
            "rootless_user": self.rootless_user,
            "secrets": {name: s.to_json() for name, s in self.secrets.items()},
            "rendered": {path: r.to_json() for path, r in self.rendered.items()},
            "hooks": self.hooks.to_json() if self.hooks else None,
        }
        return {**body, **{key: value for key, value in optional.items() if value}}


def dump(manifest: Manifest) -> bytes:
    """The manifest.json bytes a build writes: sorted keys, two-space indent, UTF-8."""
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")
