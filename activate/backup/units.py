"""The containers of a group, stopped while their volumes are read or written, and the
switcher's lock, held meanwhile so that no deploy starts or stops them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .. import lock
from ..errors import Failed
from .commands import last_line, run, say

LOCK_WAIT = 1800  # seconds to wait for a deploy that holds the lock


@contextlib.contextmanager
def locked(state_dir: str, command: str) -> Iterator[None]:
    """STATE/lock, as the switcher takes it (activate/lock.py); waits for a deploy to end."""
    path = Path(state_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock.held(
        path, command, LOCK_WAIT, lambda: say(f"waiting for {path} (a deploy is running)")
    ):
        yield


def systemctl(rootless: bool, *args: str) -> list[str]:
    return ["systemctl", "--user", *args] if rootless else ["systemctl", *args]


def active_units(rootless: bool, units: list[str]) -> list[str]:
    if not units:
        return []
    done = run(systemctl(rootless, "is-active", *units), what="systemctl is-active", check=False)
    states = done.stdout.split()
    return [u for u, s in zip(units, states, strict=False) if s in ("active", "activating")]


def stop_units(rootless: bool, units: list[str]) -> None:
    if units:
        say(f"stopping {' '.join(units)}")
        run(systemctl(rootless, "stop", *units), what=f"stopping {' '.join(units)}")


def start_units(rootless: bool, units: list[str]) -> list[str]:
    """Start units (in one transaction: systemd orders them); the lines of those that failed."""
    if not units:
        return []
    say(f"starting {' '.join(units)}")
    done = run(systemctl(rootless, "start", *units), what="systemctl start", check=False)
    if done.returncode == 0:
        return []
    return [f"starting {' '.join(units)} failed: {last_line(done.stderr, done.returncode)}"]


@contextlib.contextmanager
def stopped(
    rootless: bool, all_units: list[str], units: list[str], start_anyway: bool = False
) -> Iterator[None]:
    """Stop `units`; afterwards start every unit that was running before (and `units` too
    when start_anyway), whatever happened in between."""
    before = active_units(rootless, all_units)
    try:
        stop_units(rootless, units)
        yield
    finally:
        wanted = [u for u in all_units if u in before or (start_anyway and u in units)]
        wanted += [u for u in units if u not in all_units and (start_anyway or u in before)]
        problems = start_units(rootless, wanted)
        if problems:
            raise Failed("; ".join(problems))


def ensure_volume(rootless: bool, volume: str) -> None:
    """A volume that is gone (removed by hand, a new host) is created by its quadlet unit."""
    if run(["podman", "volume", "exists", volume], what="podman", check=False).returncode == 0:
        return
    say(f"volume {volume} does not exist: creating it with {volume}-volume.service")
    run(
        systemctl(rootless, "restart", f"{volume}-volume.service"),
        what=f"creating volume {volume}",
    )
