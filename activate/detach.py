"""Detached activation and the dead-man confirmation (what deploy-rs calls magic rollback).

The deployer's SSH session must not be what keeps a switch alive, and a switch that cuts the
deployer off (a firewall rule, a broken sshd, a network change) must undo itself. So:

1. `activate --detach` (the *starter*) runs the real activation as a transient systemd unit,
   `systemd-run --unit=bundle-activate-RUN --collect ... python3 -B -m activate activate
   --run RUN ...`, and waits, reading STATE/runs/RUN/status.json, until the activation either
   ended or passed its health gate and waits for confirmation. It prints that and exits. If
   the SSH session drops meanwhile, only the starter dies.
2. The activation (`--run RUN`) switches, runs the health gate, then creates
   STATE/runs/RUN/canary and waits up to the confirmation timeout for it to disappear.
3. The deployer opens a NEW SSH connection and runs `confirm --run RUN`, which removes the
   canary, waits for the activation to finish and prints its final report. Being able to log
   in again is the proof that the new generation leaves the server reachable.
4. No confirmation in time: the activation renames the canary to canary.expired (rename and
   unlink are atomic, so exactly one of confirm and the deadline wins), rolls back by itself
   and records that in history.jsonl.

STATE/runs/RUN/ holds status.json (phase: switching, checking, confirm, done), report.json
(the final report and exit code, written last) and the canary. The newest RUNS_KEPT runs are
kept for reading afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import activation, lock
from .errors import BadInput, Failed, Reported, SwitcherError
from .protocol import Action, Goal, Stage, switcher_argv
from .runs import POLL, RUN_RE, Run
from .safety import Safety
from .scope import CURRENT as SCOPE
from .store import Generation, Store, invoking_user, remove_tree
from .switch import prepare
from .systemd import Systemd

RUNS_KEPT = 20
USER_ENV = "BUNDLE_USER"
ACTION_ENV = "BUNDLE_ACTION"  # tells a started switcher that it runs a rollback


def unit_name(run_id: str) -> str:
    # The run id, not the generation: the same generation may be activated again before
    # systemd has collected the unit of its previous run.
    return f"bundle-activate-{run_id}"


def _prune(store: Store) -> None:
    base = store.root / "runs"
    runs = sorted(
        (p for p in base.iterdir() if RUN_RE.fullmatch(p.name)),
        key=lambda p: tuple(int(x) for x in p.name.split("-")),
    )
    for old in runs[:-RUNS_KEPT]:
        remove_tree(old)


def _unit_gone(unit: str) -> bool:
    try:
        done = subprocess.run(
            SCOPE.systemctl("show", "--property=LoadState,ActiveState", "--", unit),
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return False  # cannot tell; the run's own files still will

    values = dict(ln.split("=", 1) for ln in done.stdout.splitlines() if "=" in ln)
    return values.get("LoadState") == "not-found" or values.get("ActiveState") in (
        "inactive",
        "failed",
    )


def wait(run: Run, unit: str, phases: tuple[Stage, ...]) -> dict[str, Any]:
    """Wait for one of `phases`; the status, or the final report once the run is done."""
    checked = 0.0
    while True:
        status = run.status() or {}
        if status.get("phase") == Stage.DONE or (status.get("phase") in phases):
            break
        if time.monotonic() - checked > 1.0:
            checked = time.monotonic()
            if _unit_gone(unit):
                status = run.status() or {}
                if status.get("phase") in (*phases, Stage.DONE):
                    break
                raise Failed(
                    f"the activation ({unit}) ended without a report; see `{SCOPE.journal(unit)}`"
                )
        time.sleep(POLL)
    if status.get("phase") != Stage.DONE:
        left = max(0.0, float(status.get("confirm_by", time.time())) - time.time())
        folder = run.dir.parent.parent / "generations"
        names = [p.name for p in folder.glob(f"{run.id.split('-')[0]}-*")]
        return {
            **status,
            "confirm_seconds_left": round(left, 1),
            "folder": names[0] if len(names) == 1 else None,  # where `confirm` can run
        }
    return _final(run)


def _final(run: Run) -> dict[str, Any]:
    final = run.report()
    if final is None:
        raise Failed(f"{run.dir} says the activation is done but holds no report.json")
    report = final.get("report") or {}
    code = int(final.get("exit", 1))
    if code != 0:
        raise Reported(final.get("error") or "the activation failed", report, code)
    return {**report, "run": run.id, "phase": Stage.DONE}


def start_detached(
    store: Store,
    gen: Generation,
    root: Path,
    action: Action,
    options: list[str],
) -> dict[str, Any]:
    """Start `activate --generation N` of `gen`'s own switcher detached; wait as above.

    A switch that stops, starts and restarts nothing (activation.UNCHANGED) has no confirmation
    to wait for: it runs here, in this session, and its final report is the answer."""
    store.require_exists()
    for tool in ("systemctl", "systemd-run"):
        if shutil.which(tool) is None:
            raise Failed(f"{tool} is not installed; this server needs systemd")
    with lock.held(store.lock_path, f"{action} {gen.number}"):
        # only this generation's own switcher (an activate, not a rollback) may switch to it
        if action is Action.ACTIVATE and store.pending() is None:
            services = Systemd()
            sw = prepare(store, root, services, gen.number)
            if sw.plan.changes_nothing:
                args = _options_parser().parse_args(options)
                safety = Safety(health_timeout=args.health_timeout, rollback=not args.no_rollback)
                return activation.activate(
                    store, root, services, gen.number, args.force, action, safety, sw
                ).to_json()
    run = Run(store, f"{gen.number}-{time.time_ns() // 1_000_000}")
    run.phase(Stage.STARTING)
    _prune(store)
    unit = unit_name(run.id)
    argv = [
        *SCOPE.systemd_run(),
        f"--unit={unit}",
        "--collect",
        "--quiet",
        "--service-type=exec",
        f"--working-directory={gen.path}",
        f"--setenv={USER_ENV}={invoking_user()}",
        f"--setenv={ACTION_ENV}={action}",
        f"--description=bundle: {action} generation {gen.number}",
        "--",
        *switcher_argv(
            "activate",
            str(store.root),
            str(root),
            ["--generation", str(gen.number), "--run", run.id, *options],
            python=sys.executable,
        ),
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise Failed("systemd-run is not installed on this server; it comes with systemd") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or ["no message"]
        raise Failed(
            f"systemd-run could not start the activation as {unit} ({lines[-1]}); "
            f"see `{' '.join(SCOPE.systemctl('status', unit))}`"
        )
    return wait(run, unit, (Stage.CONFIRM,))


def confirm_run(store: Store, run_id: str) -> dict[str, Any]:
    """Remove the canary of a run waiting for confirmation, then wait for its final report."""
    run = Run(store, run_id)
    if not run.dir.is_dir():
        raise BadInput(f"no activation run {run_id} on this server ({run.dir} is missing)")
    status = run.status() or {}
    try:
        os.unlink(run.canary)
    except FileNotFoundError:
        if status.get("phase") not in (Stage.CONFIRM, Stage.DONE):
            raise Failed(
                f"run {run_id} does not wait for confirmation yet (phase "
                f"{status.get('phase')!r}); confirm after `activate --detach` returned"
            ) from None
        expired = run.canary.with_name("canary.expired").exists()
        if not expired and status.get("phase") != Stage.DONE:
            raise Failed(f"run {run_id} has no canary to remove; see {run.dir}") from None
    return wait(run, unit_name(run.id), ())


# ---- the command line of `activate` ---------------------------------------------------


def safety_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--health-timeout",
        type=int,
        default=None,
        metavar="S",
        help="seconds the health gate waits (default: the manifest's, else 60)",
    )
    p.add_argument(
        "--confirm-timeout",
        type=int,
        default=None,
        metavar="S",
        help="with --detach: seconds to wait for `confirm` (default: the manifest's, else 30)",
    )
    p.add_argument(
        "--no-rollback",
        action="store_true",
        help="a failed health gate leaves the new generation active (for debugging)",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="run as a transient systemd unit; return when it waits for `confirm`",
    )
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)  # set by --detach
    p.add_argument(
        "--goal",
        choices=[g.value for g in Goal],
        default=Goal.SWITCH.value,
        help="test: the next boot brings up what runs now; boot: only the next boot changes",
    )


def _options_parser() -> argparse.ArgumentParser:
    """Reads back what passed_on() wrote."""
    p = argparse.ArgumentParser(add_help=False)
    safety_options(p)
    p.add_argument("--force", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--services", default="auto")
    return p


def passed_on(args: argparse.Namespace) -> list[str]:
    """The options of a detaching `activate` that the detached one needs too."""
    out = ["--force"] * args.force + ["--no-rollback"] * args.no_rollback
    out += ["--debug"] * args.debug
    out += ["--goal", args.goal] * (args.goal != Goal.SWITCH)
    for flag, value in (
        ("--health-timeout", args.health_timeout),
        ("--confirm-timeout", args.confirm_timeout),
    ):
        if value is not None:
            out += [flag, str(value)]
    if args.services != "auto":
        out += ["--services", args.services]
    return out


def safety_of(args: argparse.Namespace, store: Store) -> Safety:
    if args.health_timeout is not None and args.health_timeout < 1:
        raise BadInput("--health-timeout must be at least 1 second")
    if args.confirm_timeout is not None and args.confirm_timeout < 0:
        raise BadInput("--confirm-timeout must not be negative")
    return Safety(
        health_timeout=args.health_timeout,
        confirm_timeout=args.confirm_timeout,
        rollback=not args.no_rollback,
        run=Run(store, args.run) if args.run else None,
        goal=Goal(args.goal),
    )


@contextmanager
def reporting(run: Run | None) -> Iterator[None]:
    """A detached activation always leaves its final word for the processes waiting on it."""
    try:
        yield
    except SwitcherError as exc:
        if run is not None:
            run.finish(dict(getattr(exc, "report", None) or {}), exc.exit_code, exc.message)
        raise
    except BaseException as exc:
        if run is not None:
            run.finish({}, 1, f"internal error: {type(exc).__name__}: {exc}")
        raise
