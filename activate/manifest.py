"""Reading manifest.json: parsed and checked once, then trusted as typed values.

The values and their JSON form are activate/manifest_format.py, shared with the builder. Unknown
keys are ignored (an older switcher must still read a newer manifest when it rolls back to its
own generation); known keys are checked strictly and every error names its key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from . import strict_json
from .errors import BadInput
from .manifest_format import (
    CHECK_KINDS,
    FORMAT,
    HOOK_PHASES,
    HOOK_TIMEOUT,
    KINDS,
    MANIFEST_NAME,
    UNIT_FOLDER,
    Check,
    FileEntry,
    Hook,
    Hooks,
    Manifest,
    RenderedFile,
    SecretUse,
    State,
    Unit,
    bundle_hash,
    closure_hash,
    service_name,
)

# the switcher's modules take the manifest types from here, beside the parser
__all__ = [
    "FORMAT",
    "KINDS",
    "MANIFEST_NAME",
    "UNIT_FOLDER",
    "Check",
    "FileEntry",
    "Hook",
    "Hooks",
    "Manifest",
    "RenderedFile",
    "SecretUse",
    "State",
    "Unit",
    "bundle_hash",
    "check_relative_path",
    "closure_hash",
    "manifest_from_dict",
    "parse_manifest",
    "service_name",
]

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*\Z")
MODE_RE = re.compile(r"^0?[0-7]{3}\Z")
SECRET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
RENDERED_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")


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
    expected_service = service_name(key.removesuffix(f".{kind}"), kind)
    if service != expected_service:
        raise _fail(f"{where}.service", f"expected {expected_service}, got {service!r}")
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
    reload = (
        _parse_reload(raw["reload"], unit_files, path, f"{where}.reload")
        if "reload" in raw
        else None
    )
    return Unit(
        key,
        kind,
        path,
        service,
        closure,
        unit_files,
        requires,
        image,
        enable,
        checks,
        state,
        reload,
    )


def _parse_reload(raw: Any, unit_files: tuple[str, ...], path: str, where: str) -> tuple[str, ...]:
    """The unit's files mirrored under STATE/live: its own, never its unit file."""
    _typed(raw, dict, where)
    files = tuple(_typed(raw.get("files"), list, f"{where}.files"))
    for i, f in enumerate(files):
        if _typed(f, str, f"{where}.files[{i}]") not in unit_files or f == path:
            raise _fail(f"{where}.files[{i}]", f"{f} is not a config file of this unit")
    return files


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


def _parse_secrets(raw: Any) -> dict[str, SecretUse]:
    """Names, keyed fingerprints and users of the secrets the generation needs (never values)."""
    if not isinstance(raw, dict):
        raise _fail("secrets", "expected an object")
    found: dict[str, SecretUse] = {}
    for name, e in raw.items():
        at = f"secrets.{name}"
        if not SECRET_NAME_RE.fullmatch(name) or not isinstance(e, dict):
            raise _fail(at, "invalid secret entry")
        fp, podman, used_by = e.get("fingerprint"), e.get("podman_secret"), e.get("used_by", [])
        if fp is not None and (not isinstance(fp, str) or not SHA256_RE.fullmatch(fp)):
            raise _fail(f"{at}.fingerprint", "not a lowercase sha256 hex digest")
        if podman is not None and podman not in (name, f"{name}-{(fp or '')[:12]}"):
            raise _fail(f"{at}.podman_secret", f"expected {name}-FINGERPRINT12")
        if not isinstance(used_by, list) or not all(isinstance(u, str) for u in used_by):
            raise _fail(f"{at}.used_by", "expected a list of unit keys")
        found[name] = SecretUse(name, fp, podman, tuple(used_by))
    return found


def _parse_rendered(
    raw: Any, files: Mapping[str, FileEntry], secrets: Mapping[str, SecretUse]
) -> dict[str, RenderedFile]:
    """The bundle files the server completes with the secrets they embed."""
    if not isinstance(raw, dict):
        raise _fail("rendered", "expected an object")
    rendered: dict[str, RenderedFile] = {}
    for path, e in raw.items():
        at = f"rendered.{path}"
        check_relative_path(path, at)
        if path not in files or not isinstance(e, dict):
            raise _fail(at, "not a file of this generation")
        ident, names = e.get("id"), e.get("secrets")
        if not isinstance(ident, str) or not RENDERED_ID_RE.fullmatch(ident):
            raise _fail(f"{at}.id", "expected 16 hex digits")
        if not isinstance(names, list) or not all(n in secrets for n in names):
            raise _fail(f"{at}.secrets", "names a secret the manifest does not list")
        rendered[path] = RenderedFile(path, ident, tuple(names), files[path].mode)
    return rendered


def _parse_hooks(raw: Any, files: Mapping[str, FileEntry]) -> Hooks:
    """The deploy hooks: scripts of this generation, each with the command it runs."""
    _typed(raw, dict, "hooks")
    found: dict[str, tuple[Hook, ...]] = {}
    for phase in HOOK_PHASES:
        hooks = []
        for i, e in enumerate(_typed(raw.get(phase, []), list, f"hooks.{phase}")):
            at = f"hooks.{phase}[{i}]"
            _typed(e, dict, at)
            path = check_relative_path(_typed(e.get("path"), str, f"{at}.path"), f"{at}.path")
            if path not in files:
                raise _fail(f"{at}.path", f"{path} is not listed under files")
            hooks.append(Hook(phase, path, _typed(e.get("command"), str, f"{at}.command")))
        found[phase] = tuple(hooks)
    timeout = _typed(raw.get("timeout", HOOK_TIMEOUT), int, "hooks.timeout")
    if timeout <= 0:
        raise _fail("hooks.timeout", "must be positive")
    return Hooks(found["pre"], found["post"], timeout)


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
    secrets = _parse_secrets(raw.get("secrets", {}))
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
        secrets=MappingProxyType(secrets),
        rendered=MappingProxyType(_parse_rendered(raw.get("rendered", {}), files, secrets)),
        hooks=_parse_hooks(raw["hooks"], files) if raw.get("hooks") is not None else Hooks(),
    )
