"""Rolling and canary switches: a fleet in batches, each batch's health gate before the next.

The hosts of a batch switch in parallel (each behind its own health gate, on its server). The
first batch with a failed host stops the rollout: the failed host's switcher has already put
its old generation back, the hosts of that batch that switched are rolled back too (a batch
goes back as a whole, so no batch is left half on the new generation), and the hosts of later
batches are never contacted. A canary is a batch of one, with a pause after it (a person's
answer, or a watch over some minutes of healthy running) before the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from activate.protocol import Result, Switched
from builder.base.errors import InputError
from builder.base.words import plural
from builder.deploy.fleet import Outcome, run_fleet
from builder.deploy.results import SwitchResult
from builder.stack.timespec import timespan_usec

# what a host's line in the summary says
SWITCHED = "switched"
ROLLED_BACK = "rolled back"  # its own gate failed and its switcher went back
BATCH_ROLLED_BACK = "rolled back with its batch"
FAILED = "failed"
NOT_REACHED = "not reached"


def batch_size(text: str, hosts: int) -> int:
    """`--batch 2` or `--batch 25%` as a number of hosts (at least 1)."""
    value = text[:-1] if text.endswith("%") else text
    if not value.isdigit() or int(value) < 1 or (text.endswith("%") and int(value) > 100):
        raise InputError(
            f"--batch {text!r}: give a number of hosts (--batch 2) or a share of them "
            "(--batch 25%, 1 to 100)"
        )
    if text.endswith("%"):
        return max(1, math.ceil(hosts * int(value) / 100))
    return int(value)


def wait_seconds(text: str) -> float:
    """`--canary-wait 5m` in seconds (systemd time spans: 90s, 5min, 1h)."""
    usec = timespan_usec(text.strip()) if text.strip() else None
    if usec is None or usec < 10**6:
        raise InputError(
            f"--canary-wait {text!r}: give how long the canary must run healthy, "
            'like "90s", "5m" or "1h" (at least 1 s)'
        )
    return usec / 1e6


def plan_batches(hosts: Sequence[str], size: int | None, canary: str | None) -> list[list[str]]:
    """The canary alone first, then the other hosts `size` at a time (all at once: no size)."""
    if canary is not None and canary not in hosts:
        raise InputError(
            f"--canary {canary}: not one of the hosts of this switch ({', '.join(hosts)})"
        )
    rest = [h for h in hosts if h != canary]
    step = size or len(rest) or 1
    batches = [rest[i : i + step] for i in range(0, len(rest), step)]
    return ([[canary]] if canary is not None else []) + batches


@attrs.frozen
class HostRun:
    """One host of a rollout: its batch, whether it was reached, and what it runs now."""

    host: str
    batch: int  # 1-based
    result: str = NOT_REACHED
    from_: int | None = None
    to: int | None = None
    runs: int | None = None  # the generation active at the end (None: not known here)
    error: str | None = None

    @property
    def reached(self) -> bool:
        return self.result != NOT_REACHED

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "batch": self.batch,
            "reached": self.reached,
            "result": self.result,
            "from": self.from_,
            "to": self.to,
            "runs": self.runs,
            "error": self.error,
        }


@attrs.frozen
class Rollout:
    batches: tuple[tuple[str, ...], ...]
    hosts: tuple[HostRun, ...]
    stopped: str | None = None  # why the rollout stopped before the end (None: it did not)

    @property
    def complete(self) -> bool:
        return self.stopped is None and all(h.result == SWITCHED for h in self.hosts)

    def to_json(self) -> dict[str, Any]:
        runs = {h.host: h for h in self.hosts}
        return {
            "action": "rolling switch",
            "complete": self.complete,
            "stopped": self.stopped,
            "batches": [
                {"batch": i, "hosts": [runs[h].to_json() for h in batch]}
                for i, batch in enumerate(self.batches, 1)
            ],
        }


# between batches: None to go on, or why to stop (the batch that just switched then goes back)
Pause = Callable[[int, list[HostRun]], str | None]


def roll(
    batches: list[list[str]],
    switch: Callable[[str], SwitchResult],
    rollback: Callable[[str, int | None], SwitchResult] | None,
    pause: Pause,
    parallel: int,
    on_done: Callable[[Outcome], None],
    on_batch: Callable[[int, list[str]], None],
) -> Rollout:
    """Switch batch by batch; stop at the first failed host or the first `pause` that says no.
    `rollback`: how a host of the stopped batch goes back (None: it stays)."""
    runs = {h: HostRun(h, i) for i, batch in enumerate(batches, 1) for h in batch}
    stopped: str | None = None
    for i, batch in enumerate(batches, 1):
        on_batch(i, batch)
        outcomes = run_fleet(batch, switch, min(parallel, len(batch)), False, on_done)
        for o in outcomes:
            runs[o.host] = _ran(runs[o.host], o)
        failed = [o.host for o in outcomes if not o.ok]
        if failed:
            stopped = (
                f"at batch {i} of {len(batches)}: {', '.join(failed)} failed; {_later(batches, i)}"
            )
        else:
            why = pause(i, [runs[h] for h in batch]) if i < len(batches) else None
            if why is not None:
                stopped = f"after batch {i} of {len(batches)}: {why}; {_later(batches, i)}"
        if stopped is not None:
            if rollback is not None:  # --no-rollback: the stopped batch stays, to look at
                runs.update(_roll_back(batch, runs, rollback, parallel, on_done))
            break
    return Rollout(
        tuple(tuple(b) for b in batches), tuple(runs[h] for b in batches for h in b), stopped
    )


def _roll_back(
    batch: list[str],
    runs: dict[str, HostRun],
    rollback: Callable[[str, int | None], SwitchResult],
    parallel: int,
    on_done: Callable[[Outcome], None],
) -> dict[str, HostRun]:
    """The hosts of a stopped batch that switched, back on the generation each came from."""
    switched = [h for h in batch if runs[h].result == SWITCHED]
    back = run_fleet(
        switched,
        lambda h: rollback(h, runs[h].from_),
        min(parallel, max(1, len(switched))),
        False,
        on_done,
    )
    return {o.host: _back(runs[o.host], o) for o in back}


def _later(batches: list[list[str]], i: int) -> str:
    left = sum(len(b) for b in batches[i:])
    return f"{plural(left, 'host')} not reached" if left else "no host left to reach"


def _ran(run: HostRun, o: Outcome) -> HostRun:
    """A host after its switch: switched, or failed (and where its switcher left it)."""
    if o.ok and isinstance(o.value, SwitchResult):
        reply = o.value.reply
        return attrs.evolve(run, result=SWITCHED, from_=reply.from_, to=reply.to, runs=reply.to)
    report = o.value if isinstance(o.value, Switched) else None
    if report is None:
        return attrs.evolve(run, result=FAILED, error=o.error)
    back = report.result is Result.ROLLED_BACK
    return attrs.evolve(
        run,
        result=ROLLED_BACK if back else FAILED,
        from_=report.from_,
        to=report.to,
        runs=report.from_ if back else None,
        error=o.error,
    )


def _back(run: HostRun, o: Outcome) -> HostRun:
    """A host of the stopped batch after its rollback: on its old generation, or not."""
    if o.ok and isinstance(o.value, SwitchResult):
        return attrs.evolve(run, result=BATCH_ROLLED_BACK, runs=o.value.reply.to)
    error = f"switched, but going back with its batch failed: {o.error}"
    return attrs.evolve(run, result=FAILED, runs=None, error=error)


def summary_table(rollout: Rollout) -> str:
    rows = [("HOST", "BATCH", "FROM", "TO", "RUNS", "RESULT")]
    for h in rollout.hosts:
        runs = str(h.runs) if h.runs is not None else ("-" if not h.reached else "?")
        rows.append(
            (h.host, str(h.batch), _gen(h.from_), _gen(h.to), runs, h.result),
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _gen(n: int | None) -> str:
    return "-" if n is None else str(n)
