"""What systemd says about one unit (`systemctl show`), as read by activate/systemd.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnitState:
    load: str | None
    active: str | None
    sub: str | None
    main_pid: int | None
    restarts: int | None = None  # NRestarts: automatic restarts since its last start by hand
    result: str | None = None  # Result: "success", "exit-code", "signal", "start-limit-hit", …
    exit_code: int | None = None  # ExecMainCode of the last run: 1 exited, 2 killed, 3 dumped
    exit_status: int | None = None  # ExecMainStatus: the exit status, or the signal
    started_us: int | None = None  # ConditionTimestampMonotonic: its last start by hand
    changed_us: int | None = None  # StateChangeTimestampMonotonic
    stale: bool = False  # NeedDaemonReload: its file changed since systemd read it
