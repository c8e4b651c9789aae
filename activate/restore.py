"""The way back: a failed switch (activate/activation.py) or one killed halfway
(activate/recover.py) returns to the old generation by the same path, undoing exactly what
the forward path did (its `Progress`)."""

from __future__ import annotations

from collections.abc import Callable

from . import journal, live
from .errors import SwitcherError
from .install import install_units
from .planner import RUNNING_STATES, plan
from .switch import Progress, Switch, both_redactor, start_unit


def restore(sw: Switch, progress: Progress) -> list[str]:
    """Best effort back to the old generation; returns what could not be done."""
    errors: list[str] = []
    services, old = sw.services, sw.old
    journal.step_quietly(sw.store, "restoring")

    def attempt(what: str, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except (SwitcherError, OSError) as exc:
            errors.append(f"{what}: {getattr(exc, 'message', None) or exc}")

    back = plan(sw.new, old) if old else None
    if progress.flipped or progress.installed:
        attempt(
            "disable",
            services.disable,
            [sw.service(k) for k in (back.disable if back else sw.plan.enable)],
        )
        stop = back.stop if back else tuple(reversed(sw.plan.order))
        for key in stop:
            attempt(f"stopping {sw.service(key)}", services.stop, sw.service(key))
        for key in back.networks if back else ():
            if key in progress.touched:
                name = sw.network_name(key, sw.new, sw.target.path)
                attempt(f"removing network {name}", services.remove_network, name)
        attempt("flipping current back", sw.store.set_current, sw.current)
        attempt("putting back the live config files", live.sync, sw.store, sw.current)
        attempt(
            "reinstalling the old unit files",
            install_units,
            sw.root,
            sw.current.path if sw.current else None,
            old,
            sw.new,
        )
        attempt("daemon-reload", services.daemon_reload)
    if back is None or old is None:
        return errors
    started: set[str] = set()
    redact = both_redactor(sw)
    # a unit reloaded forward is restarted back: the way back wants a known state
    steps = [*back.steps(), *(("restart", k) for k in back.reload)]
    for action, key in steps:
        if action == "restart" and key not in progress.touched:
            continue  # never restarted forward: it still runs the old files
        started.add(key)
        attempt(f"{action}ing {sw.service(key)}", start_unit, sw, action, key, redact)
    was_running = [
        k
        for k in back.order
        if old.units[k].enable and k in sw.live and sw.live[k].active in RUNNING_STATES
    ]
    try:
        now = services.states([sw.service(k) for k in was_running])
    except (SwitcherError, OSError):
        now = {}  # unknown: starting a running unit is harmless
    for key in was_running:
        state = now.get(sw.service(key))
        if key not in started and (state is None or state.active not in RUNNING_STATES):
            attempt(f"starting {sw.service(key)}", start_unit, sw, "start", key, redact)
    attempt("enable", services.enable, [sw.service(k) for k in back.enable])
    return errors
