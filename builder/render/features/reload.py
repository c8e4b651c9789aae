"""Reload instead of restart: a container's `reload` becomes ExecReload= in its unit, and its
config files are mounted from STATE/live/ instead of STATE/current/.

Why STATE/live: a bind mount of a file resolves its source path once, when the container
starts. A mount of STATE/current/files/… keeps showing the file of the generation the
container started with after `current` moves, so a reload would read the old config. The
switcher keeps STATE/live/files/… equal to the files of `current`, rewriting each changed file
in place (same inode: what a running container's mount shows), and the manifest lists those
files under the unit's `reload` (activate/live.py, activate/planner.py).

ExecReload= in [Service] passes through quadlet unchanged on podman 5.4 (ReloadCmd= and
ReloadSignal= came in 5.6), so `systemctl reload` works on both.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from builder.base.errors import Problem
from builder.stack import unitfile
from builder.stack.load import RawStack
from builder.stack.model import Container, Reload, Stack

PODMAN = "/usr/bin/podman"
LIVE = "live"  # STATE/live/PATH mirrors the bundle file PATH of current's reloadable configs
SIGNAL = re.compile(r"^SIG[A-Z][A-Z0-9]*\Z|^SIGRTMIN\+[0-9]{1,2}\Z")


def live_path(state_dir: str, path: str) -> str:
    return posixpath.join(state_dir, LIVE, path)


def exec_reload(name: str, r: Reload) -> str:
    """The ExecReload= line: a signal to the container's main process, or a command in it."""
    if r.signal is not None:
        return f"{PODMAN} kill --signal {r.signal} {name}"
    return f"{PODMAN} exec {name} {unitfile.join_words(r.command)}"


def service_lines(name: str, c: Container) -> list[tuple[str, str]]:
    return [("ExecReload", exec_reload(name, c.reload))] if c.reload is not None else []


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    for name, c in stack.enabled_containers().items():
        r = c.reload
        if r is None:
            continue
        at = ("containers", name, "reload")
        if (r.signal is None) == (not r.command):
            yield raw.problem(at, 'give exactly one of signal (like "SIGHUP") or command')
        elif r.signal is not None and not SIGNAL.fullmatch(r.signal):
            yield raw.problem((*at, "signal"), 'must be a signal name like "SIGHUP" or "SIGUSR1"')
        elif r.command and not r.command[0].strip():
            yield raw.problem((*at, "command"), "must start with the program to run")
        if not c.configs:
            yield raw.problem(
                at, "reload applies when only config files change: this container has no configs"
            )
