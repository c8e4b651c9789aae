"""`test` and `boot` activations (nixos-rebuild's): what runs now, and what the next boot brings up.

The server keeps two pointers: STATE/current (what runs) and STATE/boot-generation, which
exists only while the next boot is to bring up another generation than `current`:

* goal `switch` (a normal switch) and every rollback: the new generation runs and the next
  boot brings it up (the link is removed);
* goal `test`: the switch runs as usual (checks, gate, rollback, dead-man), but the link keeps
  the generation that ran before (or the one an earlier test kept), so a reboot returns to it:
  a firewall or WireGuard change that locks you out is undone by a power cycle;
* goal `boot` (`record_boot`): nothing running changes. The generation is checked like an
  activation would check it (files, server, quadlet, drift, secrets made, images pulled), the
  boot unit is put in place and the link points at it.

At boot, bundle-recover.service runs when the link exists (activate/boot.py). Before any unit
of a generation starts, it switches `current` to the link's generation (`at_boot`) by the way
back the repair of an interrupted switch takes (activate/recover.py): stop, flip, unit files,
daemon-reload, start jobs queued. Its journal says `boot`, so a power cut during it is
repaired the same way at the next boot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import secrets
from .activation import check_before_change, ensure_boot_unit
from .errors import Failed
from .protocol import Action, Goal, Result, Switched
from .recover import recover, undo
from .store import NEXT_BOOT, Store, history_entry, now_utc
from .switch import prepare, recovered_reply, report_of
from .systemd import Services

ACTION = "boot"  # the history line of a switch at boot
NEXT = NEXT_BOOT  # the history line of a --boot: recorded, not active (never a rollback target)


def record_boot(store: Store, root: Path, services: Services, number: int, force: bool) -> Switched:
    """`activate --goal boot`: the next boot brings up generation `number`; the caller holds the
    lock. Refuses what an activation would refuse, before anything is recorded."""
    started = time.monotonic()
    recovered = recover(store, root, services)
    sw = prepare(store, root, services, number)
    secrets.check(store, sw.target, Action.ACTIVATE)
    facts, drift, pulled = check_before_change(sw, force)
    secrets.apply(store, sw.target, services)
    sw = ensure_boot_unit(sw)
    store.set_boot(sw.target)
    boot = store.boot()
    if boot is None:
        message = f"generation {number} already runs; the next boot brings it up"
    else:
        message = f"the next boot brings up generation {number}; nothing running changed"
    from_n = sw.current.number if sw.current else None
    store.append_history(history_entry(NEXT, from_n, number, Result.OK, message))
    return report_of(
        sw,
        Result.OK,
        server=facts,
        pulled=tuple(pulled),
        overwritten=tuple(drift),
        seconds=round(time.monotonic() - started, 2),
        goal=Goal.BOOT,
        boot=boot.number if boot else None,
        unchanged=message,
        **({"recovered": recovered_reply(recovered)} if recovered else {}),
    )


def at_boot(store: Store, root: Path, services: Services, by: str) -> str | None:
    """Bring up the boot generation when it is not `current`; what was done, None: nothing."""
    boot = store.boot()
    if boot is None:
        return None
    current = store.current()
    if current is None or current.name == boot.name:
        store.set_boot(None)  # nothing runs to switch away from, or nothing to do
        return None
    record = {
        "action": ACTION,
        "from": boot.number,  # undoing current -> boot is going back to the boot generation
        "to": current.number,
        "since": now_utc(),
        "pid": os.getpid(),
        "step": "running",
    }
    store.write_pending(record)
    errors = undo(store, root, services, boot.number, current.number, "running")
    if errors:
        message = (
            f"bringing up generation {boot.number} at boot instead of {current.number} "
            f"INCOMPLETE: {'; '.join(errors)}; fix by hand (docs/switcher.md)"
        )
        store.append_history(
            history_entry(ACTION, current.number, boot.number, "rollback failed", message)
        )
        raise Failed(message)
    store.set_boot(None)
    message = (
        f"generation {current.number} ran without being the boot generation (--test or --boot): "
        f"the boot brought up generation {boot.number} ({by})"
    )
    store.append_history(history_entry(ACTION, current.number, boot.number, Result.OK, message))
    store.clear_pending()
    return message
