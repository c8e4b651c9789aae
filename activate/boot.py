"""bundle-recover.service: a server that lost power in the middle of a switch comes back on
one whole generation by itself, before any unit of a generation starts.

Every activation on a real server (ROOT is '/', services managed) first makes sure of two
things, before it writes its journal (activate/journal.py):

* STATE/boot/activate/: a copy of the switcher doing the switch. The boot unit runs this copy,
  so the code that repairs a journal is the code that wrote it, whatever `current` points at
  and whichever switcher the generations on either side carry.
* /etc/systemd/system/bundle-recover.service, enabled (multi-user.target.wants/):

      DefaultDependencies=no, After=local-fs.target sysinit.target, Before=basic.target
      ConditionPathExists=STATE/pending.json

  Every service with default dependencies (each quadlet-generated one, each plain service of
  a generation) is ordered after basic.target, so none of them starts before the repair
  ended; sshd neither. Without a journal systemd skips the unit without starting a process.

A rootless host's switcher (activate/scope.py) puts the same unit in the user's own manager:
~/.config/systemd/user/bundle-recover.service, enabled in default.target.wants/. The user
manager (started at boot because lingering is on) orders every service with default
dependencies after its own basic.target too, quadlet's user services included, so the same
`DefaultDependencies=no` + `Before=basic.target` holds them back; local-fs.target and
sysinit.target are the system's (the user manager starts long after them) and are left out.

At boot (`python3 -B -m activate.boot --state STATE`) it runs recover (activate/recover.py)
with systemctl jobs queued (`--no-block`), not waited for: the units it starts are ordered
after it, so waiting for them would wait for itself. Their start jobs run when the boot goes
on past basic.target. It never fails the boot: TimeoutStartSec bounds it, and a state folder
that is missing or unreadable is a line in the journal (`journalctl -u bundle-recover`, or
`journalctl --user -u bundle-recover` as a rootless host's user).

A switch undone to nothing (a first activation) removes the unit and the copy again.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import bootgen, lock, scope
from .boot_unit import UNIT
from .errors import Failed, SwitcherError
from .recover import recover
from .store import Store
from .systemd import BROKEN_LOAD_STATES, Services, Systemd, last_line

BY = f"{UNIT} at boot"


class Queued(Systemd):
    """systemctl at boot: jobs are queued (--no-block) and not waited for, because the units
    are ordered after this one and would wait for it. A rootless host's unit runs as its user,
    so these go to the user's manager (`systemctl --user`), as every other call does."""

    def start(self, service: str) -> None:
        self._queue("start", service)

    def restart(self, service: str) -> None:
        self._queue("restart", service)

    def stop(self, service: str) -> None:
        self._queue("stop", service)

    def _queue(self, verb: str, service: str) -> None:
        if verb != "stop":  # a unit that failed before the crash starts afresh
            self._run(scope.CURRENT.systemctl("reset-failed", "--", service))
        done = self._run(scope.CURRENT.systemctl(verb, "--no-block", "--", service))
        if done.returncode == 0:
            return
        known = self.states([service]).get(service)
        if verb == "stop" and (known is None or known.load in BROKEN_LOAD_STATES):
            return  # a unit that does not exist is stopped
        raise Failed(
            f"{verb} {service} failed ({last_line(done.stderr or done.stdout)}); "
            f"see `{scope.CURRENT.journal(service)}`"
        )


def describe(done: dict[str, Any] | None) -> str:
    if done is None:
        return "no interrupted switch (the journal was unreadable and is removed); nothing to do"
    gone = done["interrupted"]
    what = f"{gone['action']} {gone['from']} -> {gone['to']}, cut short after step {gone['step']}"
    if done["result"] == "finished":
        return f"{what}: finished; generation {done['active']} stays"
    active = done["active"]
    now = f"generation {active} is active" if active is not None else "no generation is active"
    return f"{what}: undone; {now}, its units start as the boot goes on"


def run(state: Path, root: Path, services: Services) -> int:
    """The repair at boot, then the boot generation (activate/bootgen.py); 0 unless it failed
    (the journal then stays for the next run)."""
    store = Store(state)
    if not store.pending_path.exists() and not store.boot_link.is_symlink():
        print(f"{store.pending_path} does not exist: no switch was cut short; nothing to do")
        return 0
    try:
        with lock.held(store.lock_path, f"recover at boot ({UNIT})"):
            repair = store.pending_path.exists()
            done = recover(store, root, services, by=BY) if repair else None
            moved = bootgen.at_boot(store, root, services, BY)
    except lock.Busy as exc:
        print(f"{exc.message}; leaving the repair to that process")
        return 0
    except SwitcherError as exc:
        print(f"repairing the interrupted switch failed: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"repairing the interrupted switch failed: {exc}", file=sys.stderr)
        return 1
    if repair:
        print(describe(done))
    if moved:
        print(moved)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m activate.boot", description=__doc__)
    parser.add_argument("--state", type=Path, default=Path("/var/lib/bundle"))
    parser.add_argument("--root", type=Path, default=Path("/"))
    args = parser.parse_args(argv)
    try:
        return run(args.state.absolute(), args.root.absolute(), Queued())
    except Exception as exc:  # whatever happens, say it in one place and let the boot go on
        traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
