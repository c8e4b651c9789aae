"""Starting a unit that may still carry the trouble of the generation before.

A start or restart can come right after the unit crash-looped (it is `failed`, its start-limit
counter full: systemd refuses the job, or fails it at once as "the control process exited with
error code") or while it is still stopping (quadlet's ExecStop/ExecStopPost remove the
container). Neither says anything about the files being started. So every start (forward, the
way back after a failed gate or an interrupted switch, a rollback, a data restore):

1. waits while the unit is deactivating (up to SETTLE seconds);
2. runs `systemctl reset-failed UNIT`: forgets its failed state and its start-limit counter;
3. starts it; if that fails for a transient reason (below), does 1-3 once more;
4. else fails with systemctl's line and what systemd recorded about the unit.

| after the failed start                                  | transient | why                          |
|---------------------------------------------------------|-----------|------------------------------|
| systemctl: job canceled, transaction destructive        | yes       | another job on the unit won  |
| systemctl names the start limit, or Result=start-limit-hit | yes    | counted before the reset     |
| the unit is still (or again) deactivating               | yes       | its stop was not over        |
| anything else (its process exited, was killed, …)       | no        | the unit's own failure (crashes.py tells it) |
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .unit_state import UnitState

SETTLE = 120  # seconds to wait for a stopping unit; quadlet's stop takes well under 10
POLL = 0.2
TRANSIENT_WORDS = ("canceled", "destructive", "start-limit", "too frequently", "reset-failed")


def transient(stderr: str, st: UnitState | None) -> bool:
    """Did the start fail for a reason that a second try, after a reset, can remove?"""
    text = stderr.lower()
    if any(word in text for word in TRANSIENT_WORDS):
        return True
    return st is not None and (st.result == "start-limit-hit" or st.active == "deactivating")


def recorded(st: UnitState | None) -> str:
    """What systemd recorded about the unit, for the message: '; unit failed, Result=...'."""
    if st is None or st.active is None:
        return ""
    result = f" ({st.result})" if st.result not in (None, "success") else ""
    return f"; the unit is {st.active}{result}"


def settle(
    state: Callable[[], UnitState | None],
    wait: float = SETTLE,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> UnitState | None:
    """Wait while the unit is deactivating; its last known state (None: unknown)."""
    deadline = clock() + wait
    st = state()
    while st is not None and st.active == "deactivating" and clock() < deadline:
        sleep(POLL)
        st = state()
    return st
