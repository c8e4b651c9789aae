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
    size = len(unitfile.quote(text).encode())
    limit = unitfile.ARG_MAX if argument else unitfile.LINE_MAX
    if size > limit - 256:  # room for the key and the rest of the line
        reader = "a podman argument" if argument else "a unit file line (systemd)"
        return f"is {size} bytes, more than {reader} can hold ({limit}): shorten it"
    return None


def _strings(value: Any, at: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _strings(key, (*at, key))
            yield from _strings(item, (*at, key))
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from _strings(item, (*at, i))
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            if (type(value), field.name) not in MULTILINE:
                yield from _strings(getattr(value, field.name), (*at, field.name))
