"""Turn a merged raw stack into the model with cattrs: unknown keys and wrong types refused."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from builder.base.errors import Problem, StackError
from builder.stack.load import KeyPath, RawStack, format_key
from builder.stack.model import Stack

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


def _strict(kind: type) -> Any:
    def hook(value: Any, _: Any) -> Any:
        # cattrs would turn 5 into "5" or "5" into 5; a stack file must say what it means
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise TypeError(f"must be {_TYPE_NAMES[kind]}, not {_describe(value)}")

    return hook


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _only(conv: cattrs.Converter, base: Any, python_type: type, word: str) -> Any:
    """A cattrs hook factory that first insists on the TOML shape (array or table)."""

    def factory(kind: Any) -> Any:
        inner = base(kind, conv)

        def hook(value: Any, _: Any) -> Any:
            # a string is iterable, but "6379" is not a list of ports
            if not isinstance(value, python_type):
                raise TypeError(f"must be {word}, not {_describe(value)}")
            return inner(value, kind)

        return hook

    return factory


def _origin_is(origin: type) -> Callable[[object], bool]:
    """A predicate for `tuple[str, ...]`-like hints whose origin is `origin`."""
    return lambda hint: get_origin(hint) is origin


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (str, int, bool, float):
        conv.register_structure_hook(kind, _strict(kind))
    arrays = _only(conv, homogenous_tuple_structure_factory, list, "an array")
    tables = _only(conv, mapping_structure_factory, dict, "a table")
    conv.register_structure_hook_factory(_origin_is(tuple), arrays)
    conv.register_structure_hook_factory(_origin_is(dict), tables)
    conv.register_structure_hook(Any, lambda v, _: v)
    return conv


CONVERTER = _make_converter()


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
        out.append(raw.problem(path, f"must be a table, not {_describe(_lookup(raw.data, path))}"))
    elif isinstance(exc, TypeError | ValueError):
        message = str(exc)
        if not message.startswith("must be"):
            message = f"wrong type: {_describe(_lookup(raw.data, at)) if step else message}"
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
        return f"wrong type: {_describe(value)} is not allowed here"
    return f"wrong type ({_describe(value)}): {text}"
