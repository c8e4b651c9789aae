"""Turn a merged raw stack into the model with cattrs: unknown keys and wrong types refused."""

from __future__ import annotations

import difflib
import re
from typing import Any

import attrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from builder.base import strict
from builder.base.errors import Problem, StackError
from builder.stack.load import KeyPath, RawStack, format_key
from builder.stack.model import Stack

CONVERTER = strict.converter(strict.TOML, forbid_extra_keys=True, int_is_float=False)


def structure(raw: RawStack) -> Stack:
    """Structure the whole stack at once, reporting every problem cattrs finds."""
    for table in ("containers", "pods", "volumes", "networks", "scripts"):
        # `[volumes.data]` with no keys is a complete declaration: TOML gives {}
        for name, value in list(raw.data.get(table, {}).items()):
            if value is None:
                raw.data[table][name] = {}
    try:
        return CONVERTER.structure(raw.data, Stack)
    except Exception as exc:
        problems: list[Problem] = []
        _collect(exc, (), raw, problems)
        if not problems:
            problems.append(Problem(f"cannot read stack: {exc}", None))
        raise StackError(_without_misspelt(problems)) from exc


def _without_misspelt(problems: list[Problem]) -> list[Problem]:
    """A misspelt required key is one problem: its "did you mean" line says it all."""
    meant = set()
    for p in problems:
        m = re.search(r"did you mean `([^`]+)`\?", p.message)
        if m and p.key:
            meant.add(f"{p.key.rpartition('.')[0]}.{m.group(1)}")
    return [p for p in problems if not (p.key in meant and "required key missing" in p.message)]


def _note_step(exc: BaseException) -> KeyPath | None:
    for note in getattr(exc, "__notes__", []):
        name = getattr(note, "name", None)
        if name is not None:
            return (name,)
        index = getattr(note, "index", None)
        if index is not None:
            return (index,)
    return None


def _collect(exc: BaseException, at: KeyPath, raw: RawStack, out: list[Problem]) -> None:
    step = _note_step(exc)
    path = at + step if step else at
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            _collect(sub, path, raw, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        names = sorted(f.name for f in attrs.fields(exc.cl))
        for key in sorted(exc.extra_fields):
            near = difflib.get_close_matches(str(key), names, n=1)
            guess = f": did you mean `{near[0]}`?" if near else ""
            out.append(
                raw.problem((*path, key), f"unknown key{guess} (allowed here: {', '.join(names)})")
            )
    elif isinstance(exc, KeyError):
        out.append(raw.problem(path, _missing(path)))
    elif isinstance(exc, AttributeError) and not isinstance(_lookup(raw.data, path), dict):
        # cattrs reads a table's keys; anything else fails with "'str' object has no attribute"
        out.append(
            raw.problem(
                path,
                f"must be a table, not {strict.describe(_lookup(raw.data, path), strict.TOML)}",
            )
        )
    elif isinstance(exc, TypeError | ValueError):
        message = str(exc)
        if not message.startswith("must be"):
            message = f"wrong type: {strict.describe(_lookup(raw.data, at), strict.TOML) if step else message}"
            message = _expected_type(exc, raw.data, path) or message
        out.append(raw.problem(path, message))
    else:
        out.append(raw.problem(path, str(exc)))


def _missing(path: KeyPath) -> str:
    if len(path) <= 1:
        return f"required table missing: add [{format_key(path)}]"
    parent = format_key(path[:-1])
    if all(isinstance(part, str) for part in path[:-1]):
        parent = f"[{parent}]"
    return f"required key missing: set {path[-1]} in {parent}"


def _lookup(data: Any, path: KeyPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _expected_type(exc: BaseException, data: Any, path: KeyPath) -> str | None:
    value = _lookup(data, path)
    if value is None:
        return None
    text = str(exc)
    if "not iterable" in text or "mapping" in text.lower() or "items" in text:
        return f"wrong type: {strict.describe(value, strict.TOML)} is not allowed here"
    return f"wrong type ({strict.describe(value, strict.TOML)}): {text}"
