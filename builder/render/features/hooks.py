"""Deploy hooks: the stack's [hooks] table becomes shell scripts of the bundle, run by the switcher.

* `render(renderer)`: `scripts/hooks/pre-N.sh` and `scripts/hooks/post-N.sh` (N from 1, in the
  stack's order), and the manifest's `hooks` entry naming them. Being bundle files, they are
  covered by the bundle's hash like every other file.
* `problems(stack, raw)`: what is wrong with the [hooks] table.

The switcher runs them (activate/hooks.py); docs/operations.md says when and what a failure does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from activate.manifest_format import Hook, Hooks
from builder.base.errors import Problem
from builder.render.output import BundleFile
from builder.stack.load import RawStack
from builder.stack.model import Stack

FOLDER = "scripts/hooks"
MAX_TIMEOUT = 86400  # a day: a hook that takes longer holds the switch lock too long


def script_text(host: str, phase: str, index: int, command: str) -> bytes:
    return (
        "#!/bin/sh\n"
        f"# [hooks] {phase}[{index}] of {host}: run by the bundle switcher inside the switch lock\n"
        f"{command}\n"
    ).encode()


def render(r: Any) -> Hooks:
    """Write the hook scripts into the renderer's files; the manifest's entry for them."""
    h = r.stack.hooks
    if h is None:
        return Hooks()
    phases: dict[str, tuple[Hook, ...]] = {}
    for phase in ("pre", "post"):
        hooks = []
        for i, command in enumerate(getattr(h, phase)):
            path = f"{FOLDER}/{phase}-{i + 1}.sh"
            r.files[path] = BundleFile(script_text(r.host, phase, i, command), 0o755)
            hooks.append(Hook(phase, path, command))
        phases[phase] = tuple(hooks)
    return Hooks(phases["pre"], phases["post"], h.timeout)


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    h = stack.hooks
    if h is None:
        return
    for phase in ("pre", "post"):
        for i, command in enumerate(getattr(h, phase)):
            at = ("hooks", phase, i)
            # one line each, like every other string of a stack (builder/stack/lines.py)
            if not command.strip():
                yield raw.problem(at, "is empty: give the shell command to run")
    if not 1 <= h.timeout <= MAX_TIMEOUT:
        yield raw.problem(("hooks", "timeout"), f"must be between 1 and {MAX_TIMEOUT} seconds")
