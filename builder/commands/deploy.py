"""`bundle push`, `activate`, `switch`, `rollback`, `status`, `gc`, `plan`, `log`: one host or a fleet."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from activate.protocol import Goal, HistoryEntry, Plan, Switched
from activate.safety import Safety
from builder.base.errors import BundleError
from builder.base.words import change, plural
from builder.bundle.store import Store
from builder.commands.common import emit_json, human_size, paths_from, print_repaired
from builder.deploy.deployer import (
    connect,
    do_activate,
    do_gc,
    do_log,
    do_plan,
    do_push,
    do_rollback,
    do_status,
    local_generation,
    switch_host,
)
from builder.deploy.fleet import run_fleet, select_hosts, summary_table
from builder.deploy.results import Pushed, StatusResult, SwitchResult


class Report(Protocol):
    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


def _summary(report: Switched) -> str:
    plan = report.plan or Plan()
    parts = []
    for units, label in (
        (plan.restart, "restarted"),
        (plan.reload, "reloaded"),
        (plan.start, "started"),
        (plan.stop, "stopped"),
    ):
        if units:
            parts.append(f"{label} {', '.join(units)}")
    parts.append(f"{plural(len(plan.leave), 'unit')} left running untouched")
    if report.services == "not managed":
        parts.append("files only (services not managed)")
    return "; ".join(parts)


def _deploy_args(args: argparse.Namespace) -> tuple[Any, str]:
    return paths_from(args), args.host


def cmd_push(args: argparse.Namespace) -> int:
    def job(paths: Any, host: str) -> Pushed:
        gen = local_generation(paths, host, args.generation)
        with connect(paths, host, _target_for(args, host), args.accept_new) as server:
            return do_push(server, gen)

    def show(pushed: Pushed) -> None:
        report, where = pushed.report, pushed.where
        host, n = report.host, report.generation
        if report.already_present:
            print(
                f"{host}: generation {n} is already on {where} ({human_size(report.bytes_sent)} sent)"
            )
        else:
            print(
                f"{host}: pushed generation {n} ({report.hash[:12]}) to {where}: "
                f"{report.objects_sent} of {plural(report.objects_total, 'file')} sent, {human_size(report.bytes_sent)}; "
                f"not active yet (bundle activate {host} --generation {n})"
            )
        if report.switcher_repaired:
            print_repaired(args, report.switcher_repaired)

    return _for_hosts(args, job, show)


def cmd_activate(args: argparse.Namespace) -> int:
    paths, host = _deploy_args(args)
    gen = local_generation(paths, host, args.generation)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = do_activate(server, gen, args.force, _safety(args))
    _print_switch(args, report, host)
    return 0


def _print_switch(args: argparse.Namespace, result: SwitchResult, host: str) -> None:
    if args.json:
        emit_json(result.to_json())
        return
    report = result.reply
    print(f"{host}: {result.action} {change(report.from_, report.to)}: {report.result}")
    repaired = result.push.switcher_repaired if result.push is not None else None
    if repaired:
        print_repaired(args, repaired)
    if not args.quiet:
        if report.goal is not Goal.BOOT:  # nothing ran or stopped: its line says so
            print(f"  {_summary(report)}")
        for line in _safety_lines(report):
            print(f"  {line}")
        for warning in report.warnings:
            print(f"  warning: {warning}")


def _safety_lines(report: Switched) -> list[str]:
    """What the health gate, the dead-man and the data snapshots did (docs/reliability.md)."""
    lines = []
    health = report.health
    if health is not None and not health.skipped:
        checks = [c for c in health.checks if c.kind != "unit"]
        confirmed = "; confirmed over a new connection" if report.confirmed else ""
        lines.append(
            f"health: every unit up and {plural(len(checks), 'check')} passed in "
            f"{health.seconds:.1f} s{confirmed}"
        )
    if report.unchanged:
        lines.append(report.unchanged)
    if report.goal is Goal.TEST and report.boot is not None:
        lines.append(f"--test: a reboot brings back generation {report.boot}")
    for hook in report.hooks:
        ended = (
            "ok"
            if hook.exit_code == 0
            else f"killed after {hook.timeout} s"
            if hook.exit_code is None
            else f"exited with {hook.exit_code}"
        )
        lines.append(
            f"{hook.phase}-hook {hook.number} `{hook.command}`: {ended} in {hook.seconds:.1f} s"
        )
        lines += [f"  | {line}" for line in hook.output.splitlines()]
    kept = report.snapshot
    if kept:
        lines.append(f"data kept before the switch: {', '.join(kept.units)} in {kept.path}")
    for r in report.restored:
        lines.append(
            f"data restored: {r.unit} from {r.path} (the data it replaced is kept in "
            f"{r.replaced_data_kept_in})"
        )
    return lines


def _safety(args: argparse.Namespace) -> Safety:
    for flag, value in (
        ("--health-timeout", args.health_timeout),
        ("--confirm-timeout", args.confirm_timeout),
    ):
        if value is not None and value < (1 if flag == "--health-timeout" else 0):
            raise BundleError(
                f"{flag} must be at least {1 if flag == '--health-timeout' else 0}", 2
            )
    goal = Goal.TEST if getattr(args, "test", False) else Goal.SWITCH
    if getattr(args, "boot", False):
        goal = Goal.BOOT
    return Safety(
        health_timeout=args.health_timeout,
        confirm_timeout=args.confirm_timeout,
        rollback=not args.no_rollback,
        goal=goal,
    )


def cmd_switch(args: argparse.Namespace) -> int:
    def job(paths: Any, host: str) -> SwitchResult:
        target = _target_for(args, host)
        return switch_host(paths, host, target, args.accept_new, args.force, _safety(args))

    def show(result: SwitchResult) -> None:
        _print_switch(args, result, result.host)

    if args.batch or args.canary or args.canary_wait:
        from builder.commands.rolling import cmd_rolling  # start-up: fleet code, only if asked

        return cmd_rolling(args, lambda host: _target_for(args, host), _safety(args), show)
    return _for_hosts(args, job, show)


def cmd_rollback(args: argparse.Namespace) -> int:
    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = do_rollback(server, args.to, args.force, args.restore_data, _safety(args))
    _print_switch(args, report, host)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    def job(paths: Any, host: str) -> StatusResult:
        with connect(paths, host, _target_for(args, host), args.accept_new) as server:
            return do_status(server, Store(paths.bundles_dir, host).latest())

    return _for_hosts(args, job, lambda result: _print_status(args, result))


def _print_status(args: argparse.Namespace, result: StatusResult) -> None:
    host, report, where = result.host, result.reply, result.where
    if report.current is None:
        print(f"{host}: no generation is active on {where}")
    else:
        print(
            f"{host}: generation {report.current} ({(report.hash or '')[:12]}) is active on {where}"
        )
    if result.switcher_repaired:
        print_repaired(args, result.switcher_repaired)
    if report.boot is not None:
        print(f"  next boot: generation {report.boot} (not what runs now: --test or --boot)")
    if report.current is None:
        return
    last = report.last
    if last:
        print(
            f"  last deploy: {last.time} {last.action} {change(last.from_, last.to)}: {last.result}"
        )
    for line in report.drift:
        print(f"  drift: {line}")
    if report.interrupted:
        print(
            f"  an activation was interrupted: {report.interrupted}; the next switch finishes or undoes it"
        )
    repaired = report.recovered
    if repaired and repaired.error:
        print(f"  could not repair a switch that was killed halfway: {repaired.error}")
    elif repaired:  # the switcher repaired a switch that was killed halfway, then reported
        print(f"  repaired first: {repaired.detail}: {repaired.result}")
    if report.switching:
        print(f"  a switch is running now: {report.switching}")
    if report.units:
        width = max(len(k) for k in report.units)
        for key, unit in report.units.items():
            state = f"{unit.active or '?'}/{unit.sub or '?'}"
            pid = f"pid {unit.main_pid}" if unit.main_pid else ""
            print(f"  {key.ljust(width)}  {state:<20} {pid}")


def cmd_gc(args: argparse.Namespace) -> int:
    paths, host = _deploy_args(args)
    if args.keep < 1:
        raise BundleError("--keep must be at least 1", 2)
    with connect(paths, host, args.target, args.accept_new) as server:
        result = do_gc(paths, server, args.keep)
    if args.json:
        emit_json(result.to_json())
    else:
        removed, local = result.server.removed, result.local_removed
        print(
            f"{host}: removed {plural(len(removed), 'generation')} on the server{_listed(removed)}, "
            f"{plural(result.server.objects_removed, 'unused file')}; "
            f"{plural(len(local), 'local generation')}{_listed(local)}"
        )
        if result.switcher_repaired:
            print_repaired(args, result.switcher_repaired)
    return 0


def _listed(numbers: tuple[int, ...]) -> str:
    return f" ({', '.join(map(str, numbers))})" if numbers else ""


def cmd_plan(args: argparse.Namespace) -> int:
    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        result = do_plan(paths, server, args.generation)
    if args.json:
        emit_json(result.to_json())
        return 0
    report = result.reply
    plan = report.plan
    now = f"now {report.from_}" if report.from_ is not None else "first deploy"
    print(f"{host}: activating {report.to} ({now}) would:")
    for units, label, why in (
        (plan.stop, "stop", True),
        (plan.start, "start", True),
        (plan.restart, "restart", True),
        (plan.reload, "reload", True),
        (plan.leave, "leave alone", False),
    ):
        for unit in units:
            reason = plan.reasons.get(unit, "") if why else ""
            print(f"  {label:<13} {unit}" + (f"  ({reason})" if reason else ""))
    for line in report.drift:
        print(f"  hand edit:    {line}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        entries = do_log(server, Store(paths.bundles_dir, host).latest(), args.limit)
    for what in server.repaired:
        print_repaired(args, what)
    if args.json:
        emit_json([e.to_json() for e in entries])
        return 0
    if not entries:
        print(f"{host}: no deploys yet")
    for e in entries:
        print(_history_line(e))
    return 0


def _history_line(e: HistoryEntry) -> str:
    message = f"  {e.message}" if e.message else ""
    time, user, action, result = (
        "?" if v is None else v for v in (e.time, e.user, e.action, e.result)
    )
    return f"{time}  {user:<8} {action:<9} {change(e.from_, e.to)}  {result}{message}"


def _target_for(args: argparse.Namespace, host: str) -> str | None:
    # one --target for a fleet: `--target /srv/fake/{host}` gives each host its own folder
    return args.target.replace("{host}", host) if args.target else None


def _for_hosts(
    args: argparse.Namespace,
    job: Callable[[Any, str], R],
    show: Callable[[R], None],
) -> int:
    """One host: its report, errors as usual. Several: in parallel, a line each, then a table."""
    paths = paths_from(args)
    hosts = select_hosts(paths.stacks_dir, args.hosts, args.all)
    fleet = len(hosts) > 1 or args.all or any(h.startswith("@") for h in args.hosts)
    if args.target and len(hosts) > 1 and "{host}" not in args.target:
        raise BundleError(
            "--target with several hosts must contain {host}, e.g. --target /srv/fake/{host}", 2
        )
    if not fleet:
        report = job(paths, hosts[0])
        emit_json(report.to_json()) if args.json else show(report)
        return 0

    def done(outcome: Any) -> None:
        if args.json or (args.quiet and outcome.ok):
            return
        if outcome.ok:
            show(outcome.value)
        else:
            print(
                f"{outcome.host}: FAILED: {outcome.error}",
                file=sys.stderr if outcome.skipped or args.quiet else sys.stdout,
            )

    outcomes = run_fleet(hosts, lambda h: job(paths, h), args.parallel, args.fail_fast, done)
    if args.json:
        emit_json([o.to_json() for o in outcomes])
    else:
        print()
        print(summary_table(outcomes))
    failed = [o.host for o in outcomes if not o.ok]
    if failed and not args.json:
        print(
            f"error: {len(failed)} of {plural(len(outcomes), 'host')} failed: {', '.join(failed)}",
            file=sys.stderr,
        )
    return 1 if failed else 0
