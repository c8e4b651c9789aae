"""Read a host's stack file with its shared includes and the stack it extends, into one raw dict.

Priority, lowest first: the included shared files (in order), then the file itself. A variant
(`extends = "vps1"`) starts from the fully loaded stack it extends and overrides only what it
says. Tables merge key by key; any other value (string, number, array) is replaced whole.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs

from builder.base.errors import InputError, Problem, StackError
from builder.stack import stackfiles

KeyPath = tuple[str | int, ...]


@attrs.frozen
class RawStack:
    """A merged stack before structuring, with where each key came from."""

    host: str
    data: dict[str, Any]
    origins: dict[KeyPath, Path]
    files: tuple[Path, ...]
    stacks_dir: Path

    def locate(self, path: KeyPath) -> tuple[Path | None, int | None]:
        """File and line that set `path` (or its nearest parent) in the merged stack."""
        for n in range(len(path), -1, -1):
            origin = self.origins.get(path[:n])
            if origin is not None:
                return origin, find_line(read_text(origin), path[:n])
        return (self.files[-1] if self.files else None), None

    def problem(self, path: KeyPath, message: str) -> Problem:
        file, line = self.locate(path)
        return Problem(message, display_path(file, self.stacks_dir), format_key(path), line)


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and not (part.isprintable() and part.strip() == part and part):
            part = repr(part)  # never print a control character of a key to the terminal
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def display_path(file: Path | None, stacks_dir: Path) -> str | None:
    if file is None:
        return None
    try:
        return str(Path(stacks_dir.name) / file.relative_to(stacks_dir))
    except ValueError:
        return str(file)


_TEXT_CACHE: dict[Path, str] = {}


def read_text(path: Path) -> str:
    """The text `_parse` read from a stack file (the same text, for line numbers)."""
    if path not in _TEXT_CACHE:
        _TEXT_CACHE[path] = path.read_text(encoding="utf-8", errors="replace")
    return _TEXT_CACHE[path]


HOST_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")  # fullmatch: `$` takes a trailing newline


def stack_path(stacks_dir: Path, host: str) -> Path:
    if not HOST_NAME.fullmatch(host):
        raise InputError(
            f"{host!r} is not a host name: use lower-case letters, digits, '.', '_' or '-'"
        )
    return stacks_dir / f"{host}.toml"


def load_stack(stacks_dir: Path, host: str) -> RawStack:
    """Load `stacks_dir/HOST.toml` with everything it includes or extends."""
    stacks_dir = stacks_dir.resolve()
    path = stack_path(stacks_dir, host)
    if stackfiles.absent(path):
        known = ", ".join(sorted(p.stem for p in stacks_dir.glob("*.toml"))) or "none"
        raise InputError(
            f"{display_path(path, stacks_dir)}: no stack for host {host!r} (known: {known})"
        )
    data: dict[str, Any] = {}
    origins: dict[KeyPath, Path] = {}
    files: list[Path] = []
    _load_into(stacks_dir, path, data, origins, files, chain=())
    return RawStack(host, data, origins, tuple(files), stacks_dir)


# tomllib says what is wrong but not what to do about it
_TOML_HINTS = (
    ("Invalid value", ": write strings in quotes, arrays as [...], tables as { ... }"),
    ("Cannot overwrite a value", ": a key is set twice; keep one"),
    ("Cannot declare", ": merge the two tables into one"),
    ("Unescaped '\\'", ": write \\\\ or use a 'literal string'"),
)


def _parse(stacks_dir: Path, path: Path) -> dict[str, Any]:
    try:
        # read afresh each time: a long-lived process may load a stack that has changed
        _TEXT_CACHE[path] = stackfiles.read_text(path, stacks_dir)
    except stackfiles.UnreadableFile as exc:
        raise StackError([exc.problem]) from None
    try:
        return tomllib.loads(_TEXT_CACHE[path])
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts the position only in the message: "... (at line 3, column 11)"
        m = re.fullmatch(r"(.*?)\s*\(at line ([0-9]+), column [0-9]+\)", str(exc))
        msg, line = (m.group(1), int(m.group(2))) if m else (str(exc), None)
        hint = next((h for start, h in _TOML_HINTS if msg.startswith(start)), "")
        raise StackError(
            [Problem(f"not valid TOML: {msg}{hint}", display_path(path, stacks_dir), None, line)]
        ) from exc


def _load_into(
    stacks_dir: Path,
    path: Path,
    data: dict[str, Any],
    origins: dict[KeyPath, Path],
    files: list[Path],
    chain: tuple[Path, ...],
) -> None:
    doc = _parse(stacks_dir, path)
    problems: list[Problem] = []
    extends = doc.pop("extends", None)
    includes = doc.pop("include", [])
    shown = display_path(path, stacks_dir)
    text = read_text(path)

    def problem(key: str, message: str) -> None:
        problems.append(Problem(message, shown, key, find_line(text, (key,))))

    def load(key: str, other: Path) -> None:
        if other in (*chain, path):
            cycle = " -> ".join(p.name for p in (*chain, path, other))
            problem(key, f"{key} cycle: {cycle}; remove one of these")
        else:
            _load_into(stacks_dir, other, data, origins, files, (*chain, path))

    if extends is not None:
        if not isinstance(extends, str):
            problem("extends", 'must be a host name (a string), like extends = "vps1"')
        else:
            try:
                base = stack_path(stacks_dir, extends)
            except InputError as exc:
                problem("extends", str(exc))
            else:
                if stackfiles.absent(base):
                    problem("extends", f"no stack {base.name} to extend")
                else:
                    load("extends", base)
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        problem("include", 'must be a list of file names, like include = ["shared/x.toml"]')
        includes = []
    for name in includes:
        inc = Path(os.path.normpath(path.parent / name))
        if not inc.is_relative_to(stacks_dir):
            problem("include", f"{name!r} is outside the stacks folder")
        elif stackfiles.absent(inc):
            problem("include", f"included file {name!r} does not exist")
        else:
            load("include", inc)
    if problems:
        raise StackError(problems)
    merge(data, doc, origins, path, ())
    files.append(path)


def merge(
    into: dict[str, Any], doc: dict[str, Any], origins: dict[KeyPath, Path], src: Path, at: KeyPath
) -> None:
    """Merge `doc` over `into`: tables key by key, everything else replaced whole."""
    for key, value in doc.items():
        path = (*at, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            origins.setdefault(path, src)
            merge(into[key], value, origins, src, path)
        else:
            into[key] = _copy(value)
            for stale in [p for p in origins if p[: len(path)] == path]:
                del origins[stale]
            _record(value, origins, src, path)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _record(value: Any, origins: dict[KeyPath, Path], src: Path, path: KeyPath) -> None:
    origins[path] = src
    if isinstance(value, dict):
        for k, v in value.items():
            _record(v, origins, src, (*path, k))


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+)', text)
    return tuple(a or b or c for a, b, c in parts)


def find_line(text: str, path: KeyPath) -> int | None:
    """Best-effort line number of a key path in TOML text (array indices are ignored)."""
    want = tuple(p for p in path if isinstance(p, str))
    if not want:
        return None
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (matched length, line)
    deeper: int | None = None  # first line that sets something inside the key, e.g. [a.b.c]
    for lineno, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _split_dotted(header.group(1))
            full = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            full = table + _split_dotted(key.group(1))
        if full == want:
            return lineno
        n = len(full)
        if n > len(want) and full[: len(want)] == want and deeper is None:
            deeper = lineno
        if n < len(want) and want[:n] == full and (best is None or n > best[0]):
            best = (n, lineno)
    return deeper if deeper is not None else (best[1] if best else None)
