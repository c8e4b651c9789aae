"""How long the deployer waits for each remote step before it gives up on a server.

Every command a Server runs has a deadline; none waits forever. What each step gets
(docs/transport.md#deadlines), with C = `[host] command_timeout` (default 30 s):

| step | deadline |
|---|---|
| look-ups: switcher check, status, have, generations, history, plan, gc, secrets-have | C |
| anything sent on stdin: receive, switcher install, secrets-receive | C + 1 s per 64 KiB sent |
| activate, rollback, confirm | C + health_timeout + health_settle + confirm_timeout + 10 C |
| backup, restore: start, each poll (every 2 s) while it runs, its journal | C each |

The activation's margin (10 C: 300 s by default) is for what it does besides the health gate:
pulling images that are not on the server yet, snapshots, starting and stopping units. A
deadline that fires during a detached activation does not cut the switch in half: it goes on
without the deployer and, never confirmed, rolls back by itself (docs/reliability.md). A backup
or restore runs in a unit of its own on the server, as long as it needs: the deployer follows
it with short polls, so a hung server is noticed at the next poll and a long run goes on.
"""

from __future__ import annotations

from typing import Any

import attrs

from activate.safety import Safety

DEFAULT_COMMAND_TIMEOUT = 30
MIN_RATE = 64 * 1024  # bytes a second even a poor uplink sustains; slower counts as stalled
ACTIVATION_MARGIN = 10  # times command_timeout, for pulls, snapshots and unit starts

# What the server was doing, by switcher command, for the one-line error.
STEPS = {
    "check": "looking for its switcher",
    "install": "installing its switcher",
    "status": "reading its status",
    "generations": "listing its generations",
    "history": "reading its deploy history",
    "have": "asking which files it already has",
    "receive": "receiving the pushed generation",
    "plan": "working out what activating would do",
    "gc": "removing old generations",
    "activate": "activating the new generation",
    "rollback": "rolling back",
    "confirm": "confirming the new generation",
    "secrets-have": "asking which secrets it already has",
    "secrets-receive": "receiving secrets",
    "backup-script": "looking for the backup script",
    "backup-start": "starting the backup",
    "backup-follow": "following the backup",
    "backup-journal": "reading the backup's journal",
    "restore-start": "starting the restore",
    "restore-follow": "following the restore",
    "restore-journal": "reading the restore's journal",
    "snapshots": "listing the snapshots",
}

# Steps that switch the server: their deadline covers the health gate and the dead-man.
SWITCHING = frozenset({"activate", "rollback", "confirm"})


def doing(step: str) -> str:
    return STEPS.get(step, f"running `{step}`")


@attrs.frozen
class Deadlines:
    """The deadlines of one host, from its stack's `[host]` table: command_timeout, and the
    health and confirmation windows for a switch whose generation is not at hand."""

    command: float = DEFAULT_COMMAND_TIMEOUT
    windows: dict[str, Any] = attrs.field(factory=dict)  # health_timeout, health_settle, …

    @classmethod
    def of(cls, host: Any) -> Deadlines:
        """From a stack's Host (builder.stack.model)."""
        keys = ("health_timeout", "health_settle", "confirm_timeout")
        return cls(host.command_timeout, {k: getattr(host, k) for k in keys})

    def lookup(self) -> float:
        return self.command

    def transfer(self, size: int) -> float:
        """A step that sends `size` bytes on stdin."""
        return self.command + size / MIN_RATE

    def activation(
        self, deploy: dict[str, Any] | None = None, safety: Safety | None = None
    ) -> float:
        """A switch: the generation's health and confirmation windows (`deploy`, its manifest's
        section; the stack's without one), as overridden for this deploy by `safety`, plus a
        margin."""
        deploy = {**self.windows, **(deploy or {})}
        chosen = safety or Safety()
        health = _chosen(chosen.health_timeout, deploy.get("health_timeout", 60))
        confirm = _chosen(chosen.confirm_timeout, deploy.get("confirm_timeout", 30))
        settle = deploy.get("health_settle", 0)
        windows = float(health) + float(settle) + float(confirm)
        return self.command * (1 + ACTIVATION_MARGIN) + windows

    def for_stdin(self, size: int | None) -> float:
        """The default: a look-up, or a transfer when the step sends data."""
        return self.transfer(size) if size else self.lookup()


def _chosen(value: float | None, default: Any) -> Any:
    return default if value is None else value


def stdin_size(stdin: Any) -> int | None:
    """How many bytes a step sends: bytes, or a stream that knows its length."""
    if stdin is None:
        return None
    if isinstance(stdin, bytes | bytearray | memoryview):
        return len(stdin)
    size = getattr(stdin, "size", None)
    return int(size) if isinstance(size, int) else None
