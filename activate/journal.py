"""The journal of a switch in progress: STATE/pending.json, rewritten (atomically) at each step.

    {"action": "activate", "from": 6, "to": 7, "since": "…", "pid": 4242, "step": "flipped"}

A switch that ends, well or badly, removes it. One that was killed (kill -9, a power cut)
leaves it behind, and the next switcher that gets the lock finishes or undoes the job from it
(activate/recover.py). The steps, in order:

| step      | what has been done                                                          |
|-----------|-----------------------------------------------------------------------------|
| started   | checks passed; nothing changed yet                                           |
| stopped   | units going away or waiting for a changed network stopped, networks removed |
| flipped   | STATE/current points at the new generation                                   |
| installed | the new generation's unit files are in /etc                                 |
| reloaded  | systemd re-read them (daemon-reload) and knows every unit                    |
| running   | units started and restarted; the health gate and confirmation may follow     |
| done      | everything changed; only the history line and removing the journal are left |
| restoring | the switch failed and the way back to the old generation runs                |

Each step is also a fault point (activate/faults.py): `BUNDLE_FAULT=switch-flipped`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from . import faults
from .store import Store, now_utc

STEPS = ("started", "stopped", "flipped", "installed", "reloaded", "running", "done", "restoring")


def begin(store: Store, action: str, from_n: int | None, to_n: int) -> None:
    """Write the journal before the first change; a failure here stops the switch harmlessly."""
    store.write_pending(
        {
            "action": action,
            "from": from_n,
            "to": to_n,
            "since": now_utc(),
            "pid": os.getpid(),
            "step": "started",
        }
    )
    faults.point("switch-started")


def step(store: Store, name: str, **extra: Any) -> None:
    """Record that the switch got past `name` (one of STEPS)."""
    record = store.pending()
    if record is not None:
        store.write_pending({**record, **extra, "step": name})
    faults.point(f"switch-{name}")


def step_quietly(store: Store, name: str) -> None:
    """The same on the way back, where a full disk must not stop the restore."""
    with contextlib.suppress(OSError):
        step(store, name)
