"""activate: switch the server to a generation, or put the old one back if anything fails.

Order (nothing changes before step 5):
 1. load the target and the active generation, compute the plan (with live unit states)
 2. check the server can run it (python, systemd, podman version for the unit kinds)
 3. run podman's quadlet generator in dry-run mode on the new quadlet units
 4. refuse on drift (managed files changed by hand) unless --force; pull missing images
 5. note the switch in STATE/pending.json; disable and stop; remove changed networks
 6. flip STATE/current; install unit files; daemon-reload if systemd's view may be stale,
    then check every unit loaded
 7. start / restart, one systemctl call per dependency level; enable timers; check nothing
    failed; the health gate (one round and no confirmation when nothing was (re)started)
 8. append to history; clear pending.json
A failure in 5-7 runs the same path towards the old generation (activate/restore.py).
What the switch is and how it is decided: activate/switch.py.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import boot_unit, crashes, faults, hooks, journal, live, secrets, signals
from .errors import BadInput, Failed, Reported, RolledBack, SwitcherError
from .health import Health, gate
from .install import install_units
from .protocol import (
    Action,
    Check,
    Goal,
    HealthReport,
    HookRun,
    Kept,
    Planned,
    Result,
    Stage,
    Switched,
)
from .recover import recover
from .restore import restore
from .safety import Safety
from .snapshot import take as take_snapshot
from .store import Generation, Store, history_entry
from .switch import (
    Progress,
    Switch,
    drift_of,
    plan_reply,
    plan_summary,
    prepare,
    recovered_reply,
    redactor,
    report_of,
    start_level,
    verify_generation,
)
from .systemd import BROKEN_LOAD_STATES, Services
from .unit_state import UnitState
from .words import plural

# what a switch that stops, starts and restarts nothing says instead of its gate's window
UNCHANGED = "nothing to restart: no health window, no confirmation"


def check_before_change(sw: Switch, force: bool) -> tuple[dict[str, str], list[str], list[str]]:
    verify_generation(sw.target, sw.new)
    facts = sw.services.check_server(sw.new)
    quadlet = {
        u.key: (sw.target.path / u.path).read_bytes() for u in sw.new.units.values() if u.is_quadlet
    }
    sw.services.check_quadlet(
        quadlet, {u.key: u.service for u in sw.new.units.values() if u.is_quadlet}
    )
    drift = drift_of(sw)
    if drift and not force:
        shown = "; ".join(drift[:5]) + (f"; and {len(drift) - 5} more" if len(drift) > 5 else "")
        raise Failed(
            f"{plural(len(drift), 'managed file differs', 'managed files differ')} from what "
            f"the switcher installed: {shown}; "
            "put them back (see `status`) or run again with --force to overwrite them"
        )
    held = images_held(sw)
    pulled = sw.services.pull_missing([i for i in sw.new.all_images() if i not in held])
    return facts, drift, pulled


def images_held(sw: Switch) -> set[str]:
    """Images a running container of the active generation uses. They are on the server (podman
    removes no image a container uses, and `rmi --force` takes the container with it), so they
    need no `podman image exists` each (~50 ms a call) before a switch."""
    if sw.old is None:
        return set()
    return {
        u.image
        for key, u in sw.old.units.items()
        if u.image and u.kind == "container" and key in sw.live and sw.live[key].active == "active"
    }


def _check_loaded(sw: Switch) -> None:
    services = [u.service for u in sw.new.units.values()]
    states = sw.services.states(services)
    broken = [
        f"{s} ({states[s].load})"
        for s in services
        if s in states and states[s].load in BROKEN_LOAD_STATES
    ]
    if broken:
        raise Failed(
            f"after daemon-reload systemd does not know {', '.join(broken)}; "
            "a unit file is broken (run `/usr/libexec/podman/quadlet -dryrun` to see why)"
        )


def _check_running(sw: Switch) -> dict[str, UnitState]:
    """Fail on a unit the switch (re)started that systemd gave up on at once; the states of
    every unit of the generation, read in one call, are the gate's first round."""
    if sw.plan.changes_nothing:
        return {sw.new.units[k].service: st for k, st in sw.live.items() if k in sw.new.units}
    states = sw.services.states([u.service for u in sw.new.units.values()])
    keys = [*sw.plan.start, *sw.plan.restart, *sw.plan.with_pod, *sw.plan.reload]
    gone = crashes.account(sw.services, [sw.service(k) for k in keys], redactor(sw), states)
    if gone:
        raise Failed(gone)
    return states


def needs_reload(sw: Switch, files: dict[str, list[str]], anyway: bool) -> bool:
    """systemd's view of the unit files may be stale, so daemon-reload is needed, when: a unit
    file was written or removed; this is a first activation (nothing says systemd ever read
    these files); `anyway` (a rollback, or a switch cut short was just repaired: both follow a
    way back whose reload may not have happened); or systemd itself says a unit of either
    generation is not loaded or its file changed since it read it (NeedDaemonReload, e.g. files
    put back by a crash before their reload)."""
    if files["written"] or files["removed"] or sw.old is None or anyway:
        return True
    keys = {*sw.new.units, *sw.old.units}
    return any(k not in sw.live or sw.live[k].load != "loaded" or sw.live[k].stale for k in keys)


def _forward(
    sw: Switch, progress: Progress, reload_anyway: bool
) -> tuple[dict[str, list[str]], dict[str, UnitState]]:
    services, plan_ = sw.services, sw.plan
    services.disable([sw.service(k) for k in plan_.disable])
    for batch in plan_.stop_levels():
        progress.touched.update(batch)
        services.stop_all([sw.service(k) for k in batch])
    if plan_.networks:
        assert sw.old is not None and sw.current is not None
        for key in plan_.networks:
            progress.touched.add(key)
            services.remove_network(sw.network_name(key, sw.old, sw.current.path))
    journal.step(sw.store, "stopped")
    progress.flipped = True  # before the call: a failure inside it still needs undoing
    sw.store.set_current(sw.target)
    live.sync(sw.store, sw.target)  # reloaded containers see current's files (activate/live.py)
    journal.step(sw.store, "flipped")
    progress.installed = True
    files = install_units(sw.root, sw.target.path, sw.new, sw.old)
    journal.step(sw.store, "installed")
    if needs_reload(sw, files, reload_anyway):
        services.daemon_reload()
        _check_loaded(sw)
    journal.step(sw.store, "reloaded")
    for verb, keys in plan_.start_levels():
        progress.touched.update(keys)
        start_level(sw, verb, keys)
        faults.point("switch-starting")
    progress.touched.update(plan_.reload)
    services.reload_all([sw.service(k) for k in plan_.reload])
    progress.touched.update(plan_.with_pod)
    services.enable([sw.service(k) for k in plan_.enable])
    states = _check_running(sw)
    journal.step(sw.store, "running")
    return files, states


class Unhealthy(Failed):
    pass


def activate(
    store: Store,
    root: Path,
    services: Services,
    number: int,
    force: bool,
    action: Action,
    safety: Safety | None = None,
    prepared: Switch | None = None,
) -> Switched:
    """Switch to generation `number`; the caller holds the lock. `prepared`: prepare() for
    it, run under the same lock with no interrupted switch pending."""
    started_at = time.monotonic()
    recovered = recover(store, root, services)  # a switch killed halfway: finish or undo it first
    safety = safety or Safety()
    run = safety.run
    sw = (
        prepared
        if prepared is not None and recovered is None
        else prepare(store, root, services, number)
    )
    boot_after = _boot_after(store, sw, safety.goal, action)
    secrets.check(store, sw.target, action)
    facts, drift, pulled = check_before_change(sw, force)
    secrets_used = secrets.apply(store, sw.target, services)
    sw = ensure_boot_unit(sw)  # before the journal: a power cut from here on is repaired at boot
    from_n = sw.current.number if sw.current else None
    progress = Progress()
    outcome: dict[str, Any] = {}  # health and snapshot, in every report
    if recovered:
        outcome["recovered"] = recovered_reply(recovered)
    # A rollback is already the way back: a failed gate there is reported, not undone.
    undo_on_failure = safety.rollback and action is not Action.ROLLBACK
    ran: list[HookRun] = []
    hook_failed = _pre_hooks(sw, action, ran, outcome)
    try:
        with signals.become_errors():
            journal.begin(store, action, from_n, number)
            if run:
                run.phase(Stage.SWITCHING, **{"from": from_n, "to": number})
            kept = take_snapshot(store, services, sw.current, sw.old, sw.new, progress.touched.add)
            if kept:
                outcome["snapshot"] = kept_reply(kept)
            anyway = action is Action.ROLLBACK or recovered is not None
            files, states = _forward(sw, progress, anyway)
            timeout, settle = safety.timeouts(sw.new)
            confirm = safety.confirm(sw.new)
            if sw.plan.changes_nothing:
                # What runs did not change: nothing can restart-loop or cut the deployer off
                # because of this switch; the checks still run once (docs/reliability.md).
                settle, confirm = 0.0, 0.0
                outcome["unchanged"] = UNCHANGED
            if run:
                run.phase(Stage.CHECKING, **{"from": from_n, "to": number, "timeout": timeout})
            health = gate(sw.services, sw.new, timeout, settle, redact=redactor(sw), first=states)
            outcome["health"] = health_reply(health)
            if not health.passed and undo_on_failure:
                raise Unhealthy(health.summary())
            if health.passed:
                hook_failed = _post_hooks(sw, action, ran, outcome, undo_on_failure)
            # a rollback that cuts the deployer off goes back too: to what was reachable
            if run and confirm > 0 and safety.rollback and services.managed:
                waiting = report_of(
                    sw, Result.AWAITING_CONFIRMATION, pulled=tuple(pulled), **outcome
                )
                if not run.await_confirmation(confirm, waiting.to_json()):
                    raise Failed(
                        f"generation {number} was not confirmed within {confirm:.0f} s: no new "
                        "SSH connection from the deployer got through (or it stopped waiting)"
                    )
                outcome["confirmed"] = True
            # the goal's boot pointer: in the journal first, so a repair after a crash sets it too
            journal.step(store, "done", boot=boot_after.number if boot_after else None)
            store.set_boot(boot_after)
    except (SwitcherError, OSError) as exc:
        cause = getattr(exc, "message", None) or str(exc)
        with signals.ignored():
            errors = restore(sw, progress)
        back_to = f"generation {from_n}" if from_n is not None else "no generation"
        if errors:
            result = Result.ROLLBACK_FAILED
            message = (
                f"rollback to {back_to} INCOMPLETE after activating generation {number} failed: "
                f"{cause}; also failed: {'; '.join(errors)}; fix by hand (docs/switcher.md)"
            )
        else:
            if from_n is None:
                _forget_boot_unit(sw)  # back to no generation: none of bundle's units stay
            store.clear_pending()
            result = Result.ROLLED_BACK
            message = f"rolled back to {back_to}: activating generation {number} failed: {cause}"
        if "snapshot" in outcome:
            message += (
                f"; data kept before the switch is in {outcome['snapshot'].path} (the new "
                "code may have changed the data since)"
            )
        store.append_history(history_entry(action, from_n, number, result, message))
        report = report_of(
            sw,
            result,
            error=message,
            seconds=round(time.monotonic() - started_at, 2),
            **outcome,
        )
        raise RolledBack(message, report.to_json()) from None
    summary = plan_summary(sw.plan)
    if boot_after is not None:
        summary += f"; --test: the next boot brings up generation {boot_after.number}"
    result = Result.OK
    if not health.passed or hook_failed:
        result = Result.UNHEALTHY
        why = "--no-rollback" if action is not Action.ROLLBACK else "this is a rollback"
        what = hook_failed or health.summary()
        summary = f"{what}; generation {number} stays active ({why})"
    store.append_history(history_entry(action, from_n, number, result, summary))
    store.clear_pending()  # after the history line: the journal says `done` until then
    report = report_of(
        sw,
        result,
        server=facts,
        pulled=tuple(pulled),
        overwritten=tuple(drift),
        files=files,
        secrets=secrets_used,
        seconds=round(time.monotonic() - started_at, 2),
        goal=safety.goal,
        boot=boot_after.number if boot_after else None,
        **outcome,
    )
    if result is not Result.OK:
        raise Reported(summary, report.evolve(error=summary).to_json())
    return report


def _boot_after(store: Store, sw: Switch, goal: Goal, action: Action) -> Generation | None:
    """What the next boot brings up once this switch succeeded (None: the new generation).
    A test keeps the boot generation an earlier test kept, else takes the one running now."""
    if goal is Goal.SWITCH or action is Action.ROLLBACK:
        return None
    if goal is not Goal.TEST:
        raise BadInput(f"activate runs goals switch and test, not {goal}")
    if sw.current is None:
        raise BadInput(
            "--test needs a generation already active: the next boot would have nothing to "
            "return to; deploy once without --test"
        )
    return store.boot() or sw.current


def _hook_env(sw: Switch, phase: str) -> dict[str, str]:
    return {
        "BUNDLE_PHASE": phase,
        "BUNDLE_FROM": str(sw.current.number) if sw.current else "",
        "BUNDLE_TO": str(sw.target.number),
        "BUNDLE_STATE": str(sw.store.root),
    }


def _pre_hooks(sw: Switch, action: Action, ran: list[HookRun], outcome: dict[str, Any]) -> str:
    """The pre-hooks, before the journal: a failure stops the switch with nothing changed.
    A rollback runs none (activate/hooks.py says why)."""
    if action is Action.ROLLBACK or not sw.new.hooks.pre:
        return ""
    try:
        # SIGTERM/SIGINT end the hook (and what it started) and the switch: nothing changed yet
        with signals.become_errors():
            hooks.run_phase(
                sw.new.hooks, "pre", sw.target.path, _hook_env(sw, "pre"), redactor(sw), ran
            )
    except Failed as exc:
        now = f"generation {sw.current.number}" if sw.current else "no generation"
        raise Failed(f"{exc.message}; nothing changed, {now} stays active") from None
    finally:
        outcome["hooks"] = tuple(ran)
    return ""


def _post_hooks(
    sw: Switch, action: Action, ran: list[HookRun], outcome: dict[str, Any], undo: bool
) -> str:
    """The post-hooks, once the gate passed: a failure is undone like a failed gate, or with
    --no-rollback reported (the returned message) while the generation stays."""
    if action is Action.ROLLBACK or not sw.new.hooks.post:
        return ""
    try:
        hooks.run_phase(
            sw.new.hooks, "post", sw.target.path, _hook_env(sw, "post"), redactor(sw), ran
        )
    except Failed as exc:
        if undo:
            raise
        return exc.message
    finally:
        outcome["hooks"] = tuple(ran)
    return ""


def ensure_boot_unit(sw: Switch) -> Switch:
    """Install bundle-recover.service and its switcher copy (activate/boot_unit.py); a failure is
    a warning: the switch stays crash-consistent, only its repair waits for the next run."""
    if not boot_unit.applies(sw.root, sw.services):
        return sw
    try:
        boot_unit.install(sw.store, sw.root, sw.services)
    except (SwitcherError, OSError) as exc:
        warning = (
            f"cannot install {boot_unit.UNIT} ({getattr(exc, 'message', None) or exc}): a switch cut "
            "short by a crash is repaired only by the next run of the switcher, not at boot"
        )
        return replace(sw, warnings=(*sw.warnings, warning))
    return sw


def _forget_boot_unit(sw: Switch) -> None:
    if boot_unit.applies(sw.root, sw.services):
        with contextlib.suppress(SwitcherError, OSError):
            boot_unit.remove(sw.store, sw.root, sw.services)


def preview(store: Store, root: Path, services: Services, number: int) -> Planned:
    """The `plan` command: what activate would do, and what would stop it."""
    sw = prepare(store, root, services, number)
    return Planned(
        from_=sw.current.number if sw.current else None,
        to=sw.target.number,
        plan=plan_reply(sw.plan),
        drift=tuple(drift_of(sw)),
        services="managed" if services.managed else "not managed",
        warnings=(*sw.warnings, *secrets.problems(store, sw.target)),
    )


def health_reply(health: Health) -> HealthReport:
    return HealthReport(
        passed=health.passed,
        seconds=round(health.seconds, 2),
        timeout=health.timeout,
        settle=health.settle,
        checks=tuple(
            Check(unit=r.unit, kind=r.kind, check=r.check, ok=r.ok, output=r.output)
            for r in health.results
        ),
        skipped=health.skipped or None,
    )


def kept_reply(record: dict[str, Any]) -> Kept:
    """A snapshot's record (activate/snapshot.py) as the report names it."""
    return Kept(
        generation=record["generation"],
        from_=record["from"],
        time=record["time"],
        units=record["units"],
        path=record["path"],
    )
