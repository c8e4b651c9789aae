"""manifest.json of one generation: parsed and checked once, then trusted as typed values.

Format 1 is fixed by docs/architecture.md. Unknown keys are ignored (an older switcher must
still read a newer manifest when it rolls back to its own generation); known keys are checked
strictly and every error names its key path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import strict_json
from .errors import BadInput

FORMAT = 1
MANIFEST_NAME = "manifest.json"
# Keys left out of the bundle hash: they change with every build even when the content does not.
UNHASHED_KEYS = ("generation", "parent", "built_at")

QUADLET_KINDS = ("container", "pod", "volume", "network")
SYSTEMD_KINDS = ("service", "timer")
KINDS = QUADLET_KINDS + SYSTEMD_KINDS
UNIT_FOLDER = {
    **{k: "units/quadlet" for k in QUADLET_KINDS},
    **{k: "units/systemd" for k in SYSTEMD_KINDS},
}

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*\Z")
MODE_RE = re.compile(r"^0?[0-7]{3}\Z")


def canonical_json(obj: Any) -> bytes:
    """The canonical form of architecture.md: the bytes every hash is computed over."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def bundle_hash(raw: Mapping[str, Any]) -> str:
    """sha256 of the canonical manifest without generation, parent and built_at."""
    hashed = {k: v for k, v in raw.items() if k not in UNHASHED_KEYS}
    return hashlib.sha256(canonical_json(hashed)).hexdigest()


def closure_hash(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted lines `path\\0sha256\\n` of a unit's files."""
    lines = sorted(f"{path}\0{sha}\n" for path, sha in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def service_name(key: str, kind: str) -> str:
    """The unit name systemctl knows for a manifest unit key (quadlet's naming rules)."""
    stem = key[: -len(kind) - 1]
    return {
        "container": f"{stem}.service",
        "pod": f"{stem}-pod.service",
        "volume": f"{stem}-volume.service",
        "network": f"{stem}-network.service",
    }.get(kind, key)


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle tree."""

    path: str
    sha256: str
    size: int
    mode: int


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


@dataclass(frozen=True)
class State:
    """What a stateful container keeps: podman volumes, or a dump/restore command pair."""

    container: str
    volumes: tuple[str, ...]
    dump: str | None = None
    restore: str | None = None


@dataclass(frozen=True)
class Unit:
    """One quadlet or systemd unit of the generation."""

    key: str
    kind: str
    path: str
    service: str
    closure: str
    files: tuple[str, ...]
    requires: tuple[str, ...]
    image: str | None
    enable: bool
    checks: tuple[Check, ...] = ()
    state: State | None = None

    @property
    def is_quadlet(self) -> bool:
        return self.kind in QUADLET_KINDS


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest. `hash` is recomputed here, never read from a name."""

    generation: int
    parent: int | None
    host: str
    built_at: str
    state_dir: str
    switcher: str
    requires: Mapping[str, str]
    files: Mapping[str, FileEntry]
    units: Mapping[str, Unit]
    images: Mapping[str, str]
    hash: str
    # health_timeout, health_settle, confirm_timeout (seconds); empty in older manifests
    deploy: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # the user a rootless generation runs as (activate/scope.py); None: the system's manager
    rootless_user: str | None = None

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


def _fail(where: str, problem: str) -> BadInput:
    return BadInput(f"{where}: {problem}; rebuild the bundle with a matching builder")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python; a manifest that says `"size": true` is still wrong.
    if isinstance(value, bool) and kind is not bool:
        raise _fail(where, f"expected {_type_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise _fail(where, f"expected {_type_name(kind)}, got {type(value).__name__}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def check_relative_path(path: str, where: str) -> str:
    """A bundle path: relative, '/'-separated, no empty, '.' or '..' parts, no NUL."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\0" in path
        or "\\" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise _fail(where, f"unsafe path {path!r}")
    return path


def _parse_mode(value: Any, where: str) -> int:
    text = _typed(value, str, where)
    if not MODE_RE.fullmatch(text):
        raise _fail(where, f"mode {text!r} is not an octal permission like '0644'")
    return int(text, 8)


def _parse_files(raw: Any) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for path, entry in _typed(raw, dict, "files").items():
        where = f"files.{path}"
        check_relative_path(path, where)
        if path == MANIFEST_NAME:
            raise _fail(where, "the manifest cannot list itself")
        _typed(entry, dict, where)
        sha = _typed(entry.get("sha256"), str, f"{where}.sha256")
        if not SHA256_RE.fullmatch(sha):
            raise _fail(f"{where}.sha256", "not a lowercase sha256 hex digest")
        size = _typed(entry.get("size"), int, f"{where}.size")
        if size < 0:
            raise _fail(f"{where}.size", "negative size")
        files[path] = FileEntry(path, sha, size, _parse_mode(entry.get("mode"), f"{where}.mode"))
    # A path that is both a file and a folder cannot be laid out on disk.
    folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    clash = sorted(folders & files.keys())
    if clash:
        raise _fail(f"files.{clash[0]}", "is both a file and a folder")
    return files


def _parse_unit(key: str, raw: Any, files: Mapping[str, FileEntry]) -> Unit:
    where = f"units.{key}"
    _typed(raw, dict, where)
    kind = _typed(raw.get("kind"), str, f"{where}.kind")
    if kind not in KINDS:
        raise _fail(f"{where}.kind", f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not UNIT_NAME_RE.fullmatch(key) or not key.endswith(f".{kind}") or key == f".{kind}":
        raise _fail(where, f"unit name must be NAME.{kind} with letters, digits, '_.@:-'")
    path = _typed(raw.get("path"), str, f"{where}.path")
    if path != f"{UNIT_FOLDER[kind]}/{key}":
        raise _fail(f"{where}.path", f"expected {UNIT_FOLDER[kind]}/{key}, got {path!r}")
    if path not in files:
        raise _fail(f"{where}.path", f"{path} is not listed under files")
    service = _typed(raw.get("service"), str, f"{where}.service")
    if service != service_name(key, kind):
        raise _fail(f"{where}.service", f"expected {service_name(key, kind)}, got {service!r}")
    unit_files = tuple(_typed(raw.get("files"), list, f"{where}.files"))
    for i, f in enumerate(unit_files):
        if _typed(f, str, f"{where}.files[{i}]") not in files:
            raise _fail(f"{where}.files[{i}]", f"{f} is not listed under files")
    if path not in unit_files:
        raise _fail(f"{where}.files", "must include the unit's own path")
    closure = _typed(raw.get("closure"), str, f"{where}.closure")
    expected = closure_hash((f, files[f].sha256) for f in set(unit_files))
    if closure != expected:
        raise _fail(f"{where}.closure", "does not match the sha256 of the unit's files")
    requires = tuple(_typed(raw.get("requires", []), list, f"{where}.requires"))
    for i, r in enumerate(requires):
        _typed(r, str, f"{where}.requires[{i}]")
    image = raw.get("image")
    if image is not None:
        _typed(image, str, f"{where}.image")
    enable = _typed(raw.get("enable"), bool, f"{where}.enable")
    checks = tuple(
        _parse_check(c, f"{where}.checks[{i}]")
        for i, c in enumerate(_typed(raw.get("checks", []), list, f"{where}.checks"))
    )
    state = _parse_state(raw["state"], f"{where}.state") if raw.get("state") is not None else None
    return Unit(
        key, kind, path, service, closure, unit_files, requires, image, enable, checks, state
    )


CHECK_KINDS = ("http", "tcp", "command")


def _parse_check(raw: Any, where: str) -> Check:
    _typed(raw, dict, where)
    kinds = [k for k in CHECK_KINDS if k in raw]
    if len(kinds) != 1:
        raise _fail(where, "a check has exactly one of http, tcp or command")
    kind = kinds[0]
    target = _typed(raw[kind], str, f"{where}.{kind}")
    status = _typed(raw.get("status", 200), int, f"{where}.status")
    body = raw.get("body")
    if body is not None:
        _typed(body, str, f"{where}.body")
    timeout = _typed(raw.get("timeout", 5), int, f"{where}.timeout")
    if timeout <= 0:
        raise _fail(f"{where}.timeout", "must be positive")
    return Check(kind, target, status, body, timeout)


def _parse_state(raw: Any, where: str) -> State:
    _typed(raw, dict, where)
    container = _typed(raw.get("container"), str, f"{where}.container")
    volumes = tuple(_typed(raw.get("volumes", []), list, f"{where}.volumes"))
    for i, v in enumerate(volumes):
        if not UNIT_NAME_RE.fullmatch(_typed(v, str, f"{where}.volumes[{i}]")):
            raise _fail(f"{where}.volumes[{i}]", f"{v!r} is not a volume name")
    dump, restore = raw.get("dump"), raw.get("restore")
    for key, value in (("dump", dump), ("restore", restore)):
        if value is not None:
            _typed(value, str, f"{where}.{key}")
    return State(container, volumes, dump, restore)


def _parse_deploy(raw: Any) -> dict[str, int]:
    settings = _typed(raw, dict, "deploy")
    for key, value in settings.items():
        if _typed(value, int, f"deploy.{key}") < 0:
            raise _fail(f"deploy.{key}", "must not be negative")
    return dict(settings)


def _check_requires(units: Mapping[str, Unit]) -> None:
    for unit in units.values():
        for i, dep in enumerate(unit.requires):
            if dep not in units:
                raise _fail(f"units.{unit.key}.requires[{i}]", f"unknown unit {dep!r}")
            if dep == unit.key:
                raise _fail(f"units.{unit.key}.requires[{i}]", "a unit cannot require itself")
    # Depth-first search for a cycle; ordering starts and stops needs a DAG.
    state: dict[str, int] = {}

    def visit(key: str, trail: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            loop = " -> ".join((*trail[trail.index(key) :], key))
            raise _fail(f"units.{key}.requires", f"dependency cycle {loop}")
        state[key] = 1
        for dep in units[key].requires:
            visit(dep, (*trail, key))
        state[key] = 2

    for key in sorted(units):
        visit(key, ())


def parse_manifest(data: bytes, where: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes; raise BadInput naming the key path of the first problem."""
    raw = strict_json.loads(data, where, "rebuild the bundle")
    try:
        return manifest_from_dict(raw)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}") from None


def manifest_from_dict(raw: Any) -> Manifest:
    _typed(raw, dict, "manifest")
    fmt = raw.get("format")
    if fmt != FORMAT:
        raise BadInput(
            f"format: this switcher reads manifest format {FORMAT}, got {fmt!r}; "
            "activate it with the switcher inside its own bundle"
        )
    files = _parse_files(raw.get("files"))
    units = {
        key: _parse_unit(key, u, files)
        for key, u in _typed(raw.get("units"), dict, "units").items()
    }
    _check_requires(units)
    images = _typed(raw.get("images", {}), dict, "images")
    for name, ref in images.items():
        _typed(ref, str, f"images.{name}")
    requires = _typed(raw.get("requires", {}), dict, "requires")
    for name, version in requires.items():
        _typed(version, str, f"requires.{name}")
    generation = _typed(raw.get("generation"), int, "generation")
    if generation < 0:
        raise _fail("generation", "negative generation number")
    parent = raw.get("parent")
    if parent is not None:
        _typed(parent, int, "parent")
    state_dir = _typed(raw.get("state_dir", "/var/lib/bundle"), str, "state_dir")
    return Manifest(
        generation=generation,
        parent=parent,
        host=_typed(raw.get("host", ""), str, "host"),
        built_at=_typed(raw.get("built_at", ""), str, "built_at"),
        state_dir=state_dir,
        switcher=_typed(raw.get("switcher", ""), str, "switcher"),
        requires=MappingProxyType(dict(requires)),
        files=MappingProxyType(files),
        units=MappingProxyType(units),
        images=MappingProxyType(dict(images)),
        hash=bundle_hash(raw),
        deploy=MappingProxyType(_parse_deploy(raw.get("deploy", {}))),
        rootless_user=_typed(raw.get("rootless_user"), str, "rootless_user")
        if raw.get("rootless_user") is not None
        else None,
    )
