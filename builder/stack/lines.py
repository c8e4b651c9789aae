"""Every string of a stack that ends up on one line of a unit or config file, checked once.

A line break would start a new setting; other control characters are refused by systemd or
corrupt what reads the file; a value longer than systemd reads (or, for podman's settings,
longer than one argument of a command may be) breaks the unit when it is loaded. Only the
fields listed in MULTILINE are file contents (shell scripts, template variables), not lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from builder.base.errors import Problem
from builder.stack import unitfile
from builder.stack.load import KeyPath, RawStack
from builder.stack.model import Check, Container, Script, Stack

# fields whose text goes into a script or the manifest, never into a unit line
MULTILINE = {
    (Script, "run"),
    (Script, "stop"),
    (Container, "dump"),
    (Container, "restore"),
    (Check, "command"),
    (Stack, "vars"),
}
# what quadlet turns into podman's command line: each value is one argument
COMMAND_TABLES = ("containers", "pods", "volumes", "networks")


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    for at, text in _strings(stack, ()):
        why = problem(text, bool(at) and at[0] in COMMAND_TABLES)
        if why is not None:
            yield raw.problem(at, why)


def problem(text: str, argument: bool = False) -> str | None:
    """What is wrong with `text` as (part of) one unit file line, or None."""
    bad = unitfile.CONTROL.search(text)
    if bad is not None:
        if bad.group() in "\n\r":
            return "holds a line break: a unit file setting is one line; write it on one line"
        return f"holds the control character U+{ord(bad.group()):04X}: remove it"
    limit = unitfile.ARG_MAX if argument else unitfile.LINE_MAX
    if 4 * len(text) + 2 <= limit - 256:
        return None  # quoted, a character takes at most 4 bytes: no need to quote it to know
    size = len(unitfile.quote(text).encode())
    if size > limit - 256:  # room for the key and the rest of the line
        reader = "a podman argument" if argument else "a unit file line (systemd)"
        return f"is {size} bytes, more than {reader} can hold ({limit}): shorten it"
    return None


def _strings(value: Any, at: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Every string in `value` with its key path, depth first. An explicit stack, one cached
    look-up per type, and no path built for a leaf that is not a string: a 2,000-service stack
    has ~200,000 values, most of them numbers, flags and empty fields."""
    todo: list[tuple[Any, KeyPath]] = [(value, at)]
    while todo:
        value, at = todo.pop()
        shape = _shape(type(value))
        if shape is _STR:
            yield at, value
            continue
        if shape is _DICT:
            children = []
            for key, item in value.items():
                if _shape(type(key)) is _STR:
                    children.append((key, (*at, key)))
                if _shape(type(item)) is not _LEAF:
                    children.append((item, (*at, key)))
        elif shape is _SEQUENCE:
            children = [
                (item, (*at, i)) for i, item in enumerate(value) if _shape(type(item)) is not _LEAF
            ]
        elif shape is _LEAF:
            continue
        else:
            children = [
                (item, (*at, name))
                for name in shape
                if _shape(type(item := getattr(value, name))) is not _LEAF
            ]
        todo.extend(reversed(children))


_STR: tuple[str, ...] = ("str",)
_DICT: tuple[str, ...] = ("dict",)
_SEQUENCE: tuple[str, ...] = ("sequence",)
_LEAF: tuple[str, ...] = ()


_SHAPES: dict[type, tuple[str, ...]] = {}


def _shape(kind: type) -> tuple[str, ...]:
    found = _SHAPES.get(kind)
    if found is None:
        found = _SHAPES[kind] = _learn(kind)
    return found


def _learn(kind: type) -> tuple[str, ...]:
    """How to walk a value of this type: a marker above, or the fields of an attrs class whose
    strings are unit lines."""
    if issubclass(kind, str):
        return _STR
    if issubclass(kind, dict):
        return _DICT
    if issubclass(kind, tuple | list):
        return _SEQUENCE
    if not attrs.has(kind):
        return _LEAF
    return tuple(f.name for f in attrs.fields(kind) if (kind, f.name) not in MULTILINE)
