"""`bundle switch @web --batch 25%` and `--canary HOST`: a fleet switched batch by batch
(builder/deploy/rollout.py), with a person's answer or a healthy watch after the canary."""

from __future__ import annotations

import argparse
import posixpath
import sys
import time
from collections.abc import Callable

from activate.safety import Safety
from activate.watch import Watched
from builder.base.errors import BundleError, InputError
from builder.base.words import plural
from builder.bundle.build import build
from builder.commands.common import emit_json, paths_from
from builder.deploy.deployer import connect, do_rollback, do_switch
from builder.deploy.fleet import Outcome, select_hosts
from builder.deploy.remote import Server
from builder.deploy.results import SwitchResult
from builder.deploy.rollout import (
    HostRun,
    Rollout,
    batch_size,
    plan_batches,
    roll,
    summary_table,
    wait_seconds,
)

WATCH_EVERY = 5.0  # seconds between two looks at a canary while it runs


def cmd_rolling(
    args: argparse.Namespace,
    target_for: Callable[[str], str | None],
    safety: Safety,
    show: Callable[[SwitchResult], None],
) -> int:
    """Exit 0 when every host runs the new generation, 1 when the rollout stopped."""
    paths = paths_from(args)
    hosts = select_hosts(paths.stacks_dir, args.hosts, args.all)
    if args.target and len(hosts) > 1 and "{host}" not in args.target:
        raise InputError(
            "--target with several hosts must contain {host}, e.g. --target /srv/fake/{host}"
        )
    if args.canary_wait and not args.canary:
        raise InputError("--canary-wait needs --canary HOST: the host to watch before the rest")
    wait = wait_seconds(args.canary_wait) if args.canary_wait else None
    if args.canary and wait is None and not sys.stdin.isatty():
        raise InputError(
            "--canary asks before switching the rest, and there is no terminal to answer; "
            "give --canary-wait 5m to go on after 5 minutes of healthy running instead"
        )
    size = batch_size(args.batch, len(hosts)) if args.batch else None
    batches = plan_batches(hosts, size, args.canary)
    for host in hosts:  # every stack builds before any server changes
        build(paths, host)

    def switch(host: str) -> SwitchResult:
        with connect(paths, host, target_for(host), args.accept_new) as server:
            return do_switch(paths, server, args.force, safety)

    def rollback(host: str, to: int | None) -> SwitchResult:
        if to is None:
            raise BundleError(f"{host}: no earlier generation to go back to (its first deploy)")
        with connect(paths, host, target_for(host), args.accept_new) as server:
            return do_rollback(server, to, args.force, False, safety)

    def pause(batch: int, done: list[HostRun]) -> str | None:
        if args.canary is None or batch != 1:
            return None
        left = len(hosts) - 1
        if wait is not None:
            say(args, f"{args.canary}: watching for {wait:g} s before the other {left} hosts")
            try:
                with connect(paths, args.canary, target_for(args.canary), args.accept_new) as s:
                    return watch(s, done[0].to, wait)
            except BundleError as exc:  # a canary we cannot look at is not a healthy one
                return f"could not watch {args.canary}: {exc}"
        sys.stderr.write(f"{args.canary} switched; continue with {plural(left, 'host')}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        return None if answer in ("y", "yes") else "not confirmed after the canary"

    def done(outcome: Outcome) -> None:
        if args.json or (args.quiet and outcome.ok):
            return
        if outcome.ok:
            show(outcome.value)
        else:
            print(f"{outcome.host}: FAILED: {outcome.error}")

    def on_batch(i: int, batch: list[str]) -> None:
        say(args, f"batch {i} of {len(batches)}: {', '.join(batch)}")

    undo = None if args.no_rollback else rollback
    result = roll(batches, switch, undo, pause, args.parallel, done, on_batch)
    report(args, result)
    return 0 if result.complete else 1


def watch(server: Server, generation: int | None, seconds: float) -> str | None:
    """None when the canary's units stay up and its checks pass for `seconds`, else why not."""
    cwd = posixpath.join(server.state, "current")
    end = time.monotonic() + seconds
    while True:
        found = server.call("health", reply=Watched, cwd=cwd)
        health = found.health
        if found.generation != generation:
            return f"{server.host} runs generation {found.generation} instead of {generation}"
        if health is not None and not health.passed:
            failed = [f"{c.check}: {c.output}" for c in health.checks if not c.ok]
            return f"{server.host} stopped being healthy: {'; '.join(failed[:3])}"
        left = end - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(WATCH_EVERY, left))


def say(args: argparse.Namespace, line: str) -> None:
    if not (args.json or args.quiet):
        print(line, flush=True)


def report(args: argparse.Namespace, result: Rollout) -> None:
    if args.json:
        emit_json(result.to_json())
        return
    print()
    print(summary_table(result))
    if result.complete:
        say(args, f"all {plural(len(result.hosts), 'host')} switched in {_batches(result)}")
    else:
        print(f"error: stopped {result.stopped or 'with hosts not switched'}", file=sys.stderr)


def _batches(result: Rollout) -> str:
    return plural(len(result.batches), "batch", "batches")
