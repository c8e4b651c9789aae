"""Following a unit that runs on a server for as long as it needs (a backup, a restore).

The deployer starts it, then looks at it every POLL seconds until it ends; each look is a
look-up with its deadline ([host] command_timeout), so a server that stops answering is
noticed at the next look while a long run just keeps going. The unit goes on without us.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import attrs

from activate.protocol import Result
from builder.base.errors import BundleError
from builder.deploy.remote import RemoteError

JOURNAL_LINES = 40
POLL = 2.0  # seconds between looks at a running unit
# what a unit's state reads as, polled; a backup or restore may run for hours, each look is short
STATE = "systemctl{user} show -p ActiveState -p Result -p InvocationID {unit}; systemctl{user} list-jobs --no-legend {unit}"


def remote(server: Any, script: str, step: str, after: str = "") -> tuple[int, str, str]:
    result = server.shell(script, step, after)
    return result.rc, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


@attrs.frozen
class UnitState:
    """One look at a unit: its state, result and invocation, and whether a job is queued."""

    active: str
    result: str
    invocation: str
    queued: bool

    @classmethod
    def parse(cls, text: str, unit: str) -> UnitState:
        props = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
        queued = any(unit in ln.split() for ln in text.splitlines() if "=" not in ln)
        return cls(
            props.get("ActiveState", ""),
            props.get("Result", ""),
            props.get("InvocationID", ""),
            queued,
        )

    @property
    def running(self) -> bool:
        return self.queued or self.active in ("activating", "active", "deactivating", "reloading")


@attrs.frozen
class Run:
    """A unit the server runs for this command, and how to follow it."""

    action: str  # backup, restore
    unit: str
    env: str  # what a rootless host's commands need first
    user: str  # " --user" or ""
    journal: str  # a shell command printing the run's journal

    @property
    def after(self) -> str:
        return (
            f"; the {self.action} goes on there without this command: "
            f"journalctl{self.user} -u {self.unit} on the server shows how it ends"
        )

    def look(self, server: Any) -> UnitState:
        script = self.env + STATE.format(user=self.user, unit=shlex.quote(self.unit))
        _, out, _ = remote(server, script, f"{self.action}-follow", self.after)
        return UnitState.parse(out, self.unit)


@attrs.frozen
class RunReport:
    """A unit run followed to its end: what `backup --now` and `restore` report."""

    action: str  # backup, restore
    host: str
    result: Result
    seconds: float
    journal: tuple[str, ...]  # the run's last journal lines
    service: str | None = None  # restore: the service restored, or "--all"

    def to_json(self) -> dict[str, Any]:
        found = attrs.asdict(self, recurse=False)
        found["journal"] = list(self.journal)
        if self.service is None:
            del found["service"]
        return found


def follow(
    server: Any, run: Run, start: str, hint: str = "", service: str | None = None
) -> RunReport:
    """Start a unit on the server and follow it with short looks until it ends (it may take
    hours; each look has the look-up deadline); its journal in the report, its error line if
    it failed."""
    started = time.monotonic()
    before = run.look(server)
    rc, _, err = remote(server, run.env + start, f"{run.action}-start", run.after)
    if rc != 0:
        reason = err.strip().splitlines()[-1] if err.strip() else f"exit code {rc}"
        raise BundleError(f"{server.host}: {run.action} did not start: {reason}{hint}", 1)
    seen_running = before.running
    while True:
        now = run.look(server)
        if now.running:
            seen_running = True
        elif seen_running or now.invocation != before.invocation:
            break
        elif not now.queued:
            break  # nothing started and nothing waits: the journal says why
        time.sleep(POLL)
    seconds = round(time.monotonic() - started, 1)
    _, text, _ = remote(
        server, f"{run.env}{run.journal} | tail -n {JOURNAL_LINES}", f"{run.action}-journal"
    )
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Started ")]
    ok = now.result == "success" and now.active != "failed"
    report = RunReport(
        action=run.action,
        host=server.host,
        result=Result.OK if ok else Result.FAILED,
        seconds=seconds,
        journal=tuple(lines),
        service=service,
    )
    if not ok:
        reason = next(
            (ln.removeprefix("error: ") for ln in reversed(lines) if ln.startswith("error: ")),
            f"{run.unit} ended with {now.result or now.active}",
        )
        raise RemoteError(f"{server.host}: {run.action} failed: {reason}{hint}", report.to_json())
    return report
