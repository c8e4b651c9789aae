"""activate: switch the server to a generation, or put the old one back if anything fails.

Order (nothing changes before step 5):
 1. load the target and the active generation, compute the plan (with live unit states)
 2. check the server can run it (python, systemd, podman version for the unit kinds)
 3. run podman's quadlet generator in dry-run mode on the new quadlet units
 4. refuse on drift (managed files changed by hand) unless --force; pull missing images
 5. note the switch in STATE/pending.json; disable and stop; remove changed networks
 6. flip STATE/current; install unit files; daemon-reload; check every unit loaded
 7. start / restart in dependency order; enable timers; check nothing failed
 8. append to history; clear pending.json
A failure in 5-7 runs the same path towards the old generation (`_restore`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import crashes, faults, journal, secrets
from .errors import BadInput, Failed, Reported, RolledBack, SwitcherError
from .health import Health, gate
from .install import find_drift, install_units
from .manifest import Manifest
from .planner import RUNNING_STATES, Plan, plan
from .protocol import Action, Stage
from .safety import Safety
from .snapshot import take as take_snapshot
from .store import Generation, Store, history_entry
from .systemd import BROKEN_LOAD_STATES, Services, UnitState, network_name
from .words import plural


@dataclass(frozen=True)
class Switch:
    """Everything known before anything changes."""

    store: Store
    root: Path
    services: Services
    current: Generation | None
    old: Manifest | None
    target: Generation
    new: Manifest
    live: dict[str, UnitState]
    plan: Plan
    warnings: tuple[str, ...]
    interrupted: dict[str, Any] | None

    def service(self, key: str) -> str:
        unit = self.new.units.get(key) or (self.old.units[key] if self.old else None)
        assert unit is not None
        return unit.service

    def network_name(self, key: str, manifest: Manifest, folder: Path) -> str:
        text = (folder / manifest.units[key].path).read_text(encoding="utf-8", errors="replace")
        return network_name(key, text)


@dataclass
class _Progress:
    """What the forward path has done so far: the way back undoes exactly that."""

    touched: set[str] = field(default_factory=set)
    flipped: bool = False
    installed: bool = False


class Interrupted(Failed):
    pass


@contextmanager
def _signals_become_errors() -> Iterator[None]:
    """A dropped SSH session must not kill a half-done switch; SIGTERM/SIGINT roll back."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """The way back must finish: a second Ctrl-C would leave the server between two states."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    for s in saved:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def verify_generation(gen: Generation, manifest: Manifest) -> None:
    """Every file of the generation is there with its sha256 (receive checked; disks rot)."""
    for path, entry in manifest.files.items():
        try:
            with open(gen.path / path, "rb") as fh:
                actual = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise Failed(
                f"{gen.path / path}: {exc.strerror}; generation {gen.number} is damaged, push it again"
            ) from None
        if actual != entry.sha256:
            raise Failed(
                f"{gen.path / path} does not match its sha256; generation {gen.number} is "
                "damaged, push it again"
            )


def _live_states(services: Services, old: Manifest | None, new: Manifest) -> dict[str, UnitState]:
    units = {**(old.units if old else {}), **new.units}
    states = services.states([u.service for u in units.values()])
    return {key: states[u.service] for key, u in units.items() if u.service in states}


def _state_dir_warnings(store: Store, root: Path, new: Manifest, services: Services) -> list[str]:
    # a folder standing in for a server keeps its state under ROOT, at the same path
    under_root = os.path.join(str(root), new.state_dir.lstrip("/"))
    here = os.path.realpath(store.root)
    if here in (os.path.realpath(new.state_dir), os.path.realpath(under_root)):
        return []
    problem = (
        f"generation {new.generation} was built for state_dir {new.state_dir} but this "
        f"switcher runs with --state {store.root}"
    )
    if services.managed:
        raise BadInput(f"{problem}; its units would point at the wrong files, rebuild it")
    return [f"{problem} (harmless here: services are not managed)"]


def prepare(store: Store, root: Path, services: Services, number: int) -> Switch:
    """Read everything and decide; changes nothing (this is also `plan`)."""
    store.require_exists()
    target = store.find(number)
    new = store.load_manifest(target)
    current = store.current()
    old = store.load_manifest(current) if current else None
    warnings = _state_dir_warnings(store, root, new, services)
    live = _live_states(services, old, new) if services.managed else {}
    live_active = {k: s.active or "inactive" for k, s in live.items()} if services.managed else None
    interrupted = store.pending()
    if interrupted:
        warnings.append(
            f"an earlier switch from generation {interrupted.get('from')} to "
            f"{interrupted.get('to')} was interrupted ({interrupted.get('since')}); this run "
            "finishes the job"
        )
    return Switch(
        store=store,
        root=root,
        services=services,
        current=current,
        old=old,
        target=target,
        new=new,
        live=live,
        plan=plan(old, new, live_active),
        warnings=tuple(warnings),
        interrupted=interrupted,
    )


def drift_of(sw: Switch) -> list[str]:
    others: list[Manifest] = []
    if sw.interrupted:
        for key in ("from", "to"):
            n = sw.interrupted.get(key)
            if isinstance(n, int) and n != (sw.current.number if sw.current else None):
                # Gone or damaged: its files then simply count as drift.
                with contextlib.suppress(SwitcherError):
                    others.append(sw.store.load_manifest(sw.store.find(n)))
    return [str(d) for d in find_drift(sw.root, sw.old, sw.new, tuple(others))]


def _check_before_change(sw: Switch, force: bool) -> tuple[dict[str, str], list[str], list[str]]:
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
    pulled = sw.services.pull_missing(sw.new.all_images())
    return facts, drift, pulled


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


def _check_running(sw: Switch) -> None:
    keys = [*sw.plan.start, *sw.plan.restart, *sw.plan.with_pod]
    gone = crashes.account(sw.services, [sw.service(k) for k in keys], _redactor(sw))
    if gone:
        raise Failed(gone)


def _start(sw: Switch, action: str, key: str, redact: Callable[[str], str] | None = None) -> None:
    """Start or restart a unit; one that died at once is told like a crash (crashes.py)."""
    service = sw.service(key)
    try:
        (sw.services.start if action == "start" else sw.services.restart)(service)
    except Failed:
        gone = crashes.account(sw.services, [service], redact or _redactor(sw))
        if gone is None:
            raise
        raise Failed(gone) from None


def _redactor(sw: Switch) -> Callable[[str], str]:
    return secrets.redactor(sw.store, sw.target)


def _both_redactor(sw: Switch) -> Callable[[str], str]:
    """On the way back a unit may print the secrets of either generation."""
    new = _redactor(sw)
    if sw.current is None:
        return new
    old = secrets.redactor(sw.store, sw.current)
    return lambda line: old(new(line))


def _forward(sw: Switch, progress: _Progress) -> dict[str, list[str]]:
    services, plan_ = sw.services, sw.plan
    services.disable([sw.service(k) for k in plan_.disable])
    for key in plan_.stop:
        progress.touched.add(key)
        services.stop(sw.service(key))
    if plan_.networks:
        assert sw.old is not None and sw.current is not None
        for key in plan_.networks:
            progress.touched.add(key)
            services.remove_network(sw.network_name(key, sw.old, sw.current.path))
    journal.step(sw.store, "stopped")
    progress.flipped = True  # before the call: a failure inside it still needs undoing
    sw.store.set_current(sw.target)
    journal.step(sw.store, "flipped")
    progress.installed = True
    files = install_units(sw.root, sw.target.path, sw.new, sw.old)
    journal.step(sw.store, "installed")
    services.daemon_reload()
    _check_loaded(sw)
    journal.step(sw.store, "reloaded")
    for action, key in plan_.steps():
        progress.touched.add(key)
        _start(sw, action, key)
        faults.point("switch-starting")
    progress.touched.update(plan_.with_pod)
    services.enable([sw.service(k) for k in plan_.enable])
    _check_running(sw)
    journal.step(sw.store, "running")
    return files


def _restore(sw: Switch, progress: _Progress) -> list[str]:
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
    redact = _both_redactor(sw)
    for action, key in back.steps():
        if action == "restart" and key not in progress.touched:
            continue  # never restarted forward: it still runs the old files
        started.add(key)
        attempt(f"{action}ing {sw.service(key)}", _start, sw, action, key, redact)
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
            attempt(f"starting {sw.service(key)}", _start, sw, "start", key, redact)
    attempt("enable", services.enable, [sw.service(k) for k in back.enable])
    return errors


def report_of(sw: Switch, result: str, **extra: Any) -> dict[str, Any]:
    return {
        "from": sw.current.number if sw.current else None,
        "to": sw.target.number,
        "plan": sw.plan.as_json(),
        "result": result,
        "services": "managed" if sw.services.managed else "not managed",
        "warnings": list(sw.warnings),
        **extra,
    }


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
) -> dict[str, Any]:
    """Switch to generation `number`; the caller holds the lock."""
    from .recover import recover  # builds on this module

    started_at = time.monotonic()
    recovered = recover(store, root, services)  # a switch killed halfway: finish or undo it first
    safety = safety or Safety()
    run = safety.run
    sw = prepare(store, root, services, number)
    secrets.check(store, sw.target, action)
    facts, drift, pulled = _check_before_change(sw, force)
    secrets_used = secrets.apply(store, sw.target, services)
    sw = _boot_unit(sw)  # before the journal: a power cut from here on is repaired at boot
    from_n = sw.current.number if sw.current else None
    progress = _Progress()
    outcome: dict[str, Any] = {}  # health and snapshot, in every report
    if recovered:
        outcome["recovered"] = recovered
    # A rollback is already the way back: a failed gate there is reported, not undone.
    undo_on_failure = safety.rollback and action is not Action.ROLLBACK
    try:
        with _signals_become_errors():
            journal.begin(store, action, from_n, number)
            if run:
                run.phase(Stage.SWITCHING, **{"from": from_n, "to": number})
            kept = take_snapshot(store, services, sw.current, sw.old, sw.new, progress.touched.add)
            if kept:
                outcome["snapshot"] = kept
            files = _forward(sw, progress)
            timeout, settle = safety.timeouts(sw.new)
            if run:
                run.phase(Stage.CHECKING, **{"from": from_n, "to": number, "timeout": timeout})
            health = _health_gate(sw, timeout, settle)
            outcome["health"] = health.as_json()
            if not health.passed and undo_on_failure:
                raise Unhealthy(health.summary())
            confirm = safety.confirm(sw.new)
            # a rollback that cuts the deployer off goes back too: to what was reachable
            if run and confirm > 0 and safety.rollback and services.managed:
                waiting = report_of(sw, "awaiting confirmation", pulled=pulled, **outcome)
                if not run.await_confirmation(confirm, waiting):
                    raise Failed(
                        f"generation {number} was not confirmed within {confirm:.0f} s: no new "
                        "SSH connection from the deployer got through (or it stopped waiting)"
                    )
                outcome["confirmed"] = True
            journal.step(store, "done")
    except (SwitcherError, OSError) as exc:
        cause = getattr(exc, "message", None) or str(exc)
        with _signals_ignored():
            errors = _restore(sw, progress)
        back_to = f"generation {from_n}" if from_n is not None else "no generation"
        if errors:
            result = "rollback failed"
            message = (
                f"rollback to {back_to} INCOMPLETE after activating generation {number} failed: "
                f"{cause}; also failed: {'; '.join(errors)}; fix by hand (docs/switcher.md)"
            )
        else:
            if from_n is None:
                _forget_boot_unit(sw)  # back to no generation: none of bundle's units stay
            store.clear_pending()
            result = "rolled back"
            message = f"rolled back to {back_to}: activating generation {number} failed: {cause}"
        if "snapshot" in outcome:
            message += (
                f"; data kept before the switch is in {outcome['snapshot']['path']} (the new "
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
        raise RolledBack(message, report) from None
    summary = plan_summary(sw.plan)
    result = "ok"
    if not health.passed:
        result = "unhealthy"
        why = "--no-rollback" if action is not Action.ROLLBACK else "this is a rollback"
        summary = f"{health.summary()}; generation {number} stays active ({why})"
    store.append_history(history_entry(action, from_n, number, result, summary))
    store.clear_pending()  # after the history line: the journal says `done` until then
    report = report_of(
        sw,
        result,
        server=facts,
        pulled=pulled,
        overwritten=drift,
        files=files,
        secrets=secrets_used,
        seconds=round(time.monotonic() - started_at, 2),
        **outcome,
    )
    if result != "ok":
        raise Reported(summary, {**report, "error": summary})
    return report


def _boot_unit(sw: Switch) -> Switch:
    """Install bundle-recover.service and its switcher copy (activate/boot.py); a failure is
    a warning: the switch stays crash-consistent, only its repair waits for the next run."""
    from . import boot  # it imports recover, which imports this module

    if not boot.applies(sw.root, sw.services):
        return sw
    try:
        boot.install(sw.store, sw.root, sw.services)
    except (SwitcherError, OSError) as exc:
        warning = (
            f"cannot install {boot.UNIT} ({getattr(exc, 'message', None) or exc}): a switch cut "
            "short by a crash is repaired only by the next run of the switcher, not at boot"
        )
        return replace(sw, warnings=(*sw.warnings, warning))
    return sw


def _forget_boot_unit(sw: Switch) -> None:
    from . import boot

    if boot.applies(sw.root, sw.services):
        with contextlib.suppress(SwitcherError, OSError):
            boot.remove(sw.store, sw.root, sw.services)


def _health_gate(sw: Switch, timeout: float, settle: float) -> Health:
    return gate(sw.services, sw.new, timeout, settle, redact=_redactor(sw))


def plan_summary(p: Plan) -> str:
    parts = [
        f"{len(items)} {label}"
        for label, items in (
            ("stopped", p.stop),
            ("started", p.start),
            ("restarted", p.restart),
            ("removed", p.remove),
        )
        if items
    ]
    return ", ".join(parts) if parts else "no unit changed"


def preview(store: Store, root: Path, services: Services, number: int) -> dict[str, Any]:
    """The `plan` command: what activate would do, and what would stop it."""
    sw = prepare(store, root, services, number)
    return {
        "from": sw.current.number if sw.current else None,
        "to": sw.target.number,
        "plan": sw.plan.as_json(),
        "drift": drift_of(sw),
        "services": "managed" if services.managed else "not managed",
        "warnings": [*sw.warnings, *secrets.problems(store, sw.target)],
    }
