"""A unit that can no longer become healthy, and what to tell a person about it.

systemd restarts a crashing service (quadlet's containers say `Restart=always` unless the stack
says otherwise) until its start limit (5 starts in 10 s by default) is hit; then the unit is
`failed` and nothing starts it again by itself. A unit with `Restart=no` is `failed` after its
first crash. Waiting for the health timeout cannot change either, so the gate stops there.

| ActiveState/SubState               | Result        | restart pending | verdict        |
|------------------------------------|---------------|-----------------|----------------|
| active/running                     | any           | no              | may be healthy |
| activating/auto-restart(-queued)   | exit-code, …  | yes             | wait           |
| failed/failed-before-auto-restart  | exit-code, …  | yes (a moment)  | wait           |
| failed/failed                      | any           | no              | gave up        |
| inactive/dead                      | not success   | no              | gave up        |
| inactive/dead                      | success       | no              | wait (a socket or a check may start it) |

The same account is given wherever a unit is found given up on: by the gate, right after the
switch started it, or when `systemctl start` itself failed because the unit died at once.

The message counts its exits since the switch started it (NRestarts is reset by a start by
hand, so it counts the automatic restarts after that start, plus the last crash), the time
from that start to the failure, how the last run ended, and the last lines the unit's own
processes printed (the container's output, not systemd's or podman's notes about it).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence

from .report import one_line
from .scope import CURRENT as SCOPE
from .systemd import Services
from .unit_state import UnitState
from .words import plural

LOG_LINES = 5  # lines of the unit's own output in the message
LINE_LIMIT = 200  # characters kept of each of them
OWN_TOOLS = frozenset({"systemd", "podman", "conmon"})  # they speak about a unit, not for it


def gave_up(st: UnitState) -> bool:
    """systemd will not start this unit again by itself (the table above)."""
    if st.active == "failed":
        return st.sub == "failed"
    return st.active == "inactive" and st.result not in (None, "success")


def own_output(entries: Sequence[Mapping[str, object]]) -> list[str]:
    """journalctl -o json entries of a unit, without what systemd, podman and conmon said
    about it: the lines its own processes printed."""
    lines = []
    for entry in entries:
        comm = entry.get("_COMM")
        if entry.get("_PID") == "1" or (comm in OWN_TOOLS and "CONTAINER_NAME" not in entry):
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald gives text that is not UTF-8 as bytes
            message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256)
            message = message.decode("utf-8", "replace")
        if isinstance(message, str) and message.strip():
            text = one_line(message)
            lines.append(text if len(text) <= LINE_LIMIT else text[: LINE_LIMIT - 3] + "...")
    return lines


def _ending(st: UnitState) -> str:
    code, status = st.exit_code, st.exit_status
    if code == 1 and status is not None:
        ended = f"exit status {status}"
    elif code in (2, 3) and status is not None:
        try:
            name = signal.Signals(status).name
        except ValueError:
            name = f"signal {status}"
        ended = f"killed by {name}" + (", core dumped" if code == 3 else "")
    else:
        ended = "no exit status"
    if st.result not in (None, "success", "exit-code", "signal", "core-dump"):
        ended += f"; systemd says {st.result}"
    return ended


def _seconds(st: UnitState) -> str:
    if st.started_us is None or st.changed_us is None or st.changed_us < st.started_us:
        return ""
    span = (st.changed_us - st.started_us) / 1e6
    return f" in {span:.0f} s" if span >= 1 else f" in {span:.1f} s"


def describe(
    service: str, st: UnitState, entries: Sequence[Mapping[str, object]], journal: str
) -> str:
    """One line: `web.service keeps crashing: exited 6 times in 4 s (exit status 1), …`."""
    exits = (st.restarts or 0) + 1
    ended = _ending(st)
    if exits > 1:
        head = (
            f"{service} keeps crashing: exited {plural(exits, 'time')}{_seconds(st)} ({ended}), "
            "and systemd stopped restarting it"
        )
    else:
        head = f"{service} stopped{_seconds(st)} ({ended}) and systemd does not restart it"
    lines = own_output(entries)[-LOG_LINES:]
    said = f"last log lines: {' | '.join(lines)}" if lines else "it printed nothing"
    return f"{head}; {said}; see `{journal}`"


def told(services: Services, service: str, st: UnitState) -> str:
    """describe(), with the unit's own journal read from the server."""
    return describe(service, st, services.journal(service), SCOPE.journal(service))


def account(
    services: Services,
    names: Sequence[str],
    redact: Callable[[str], str],
    states: Mapping[str, UnitState] | None = None,
) -> str | None:
    """The units among `names` that systemd gave up on, each told as above with secret values
    hidden by `redact`; None when it gave up on none of them. `states`: read already."""
    if states is None:
        states = services.states(list(names))
    gone = [(name, states[name]) for name in names if name in states and gave_up(states[name])]
    if not gone:
        return None
    return "; ".join(redact(told(services, name, st)) for name, st in gone)
