"""`bundle backup --now` and `bundle restore` (and `restore --list`)."""

from __future__ import annotations

import argparse

from activate.protocol import BackupSnapshot, SnapshotList
from builder.base.errors import BundleError
from builder.bundle.build import load_stack
from builder.commands.common import emit_json, paths_from
from builder.deploy.backup import do_backup_now, do_list, do_restore, read_config
from builder.deploy.deployer import connect


def cmd_backup(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    rootless = read_config(paths, args.host)["stack"].host.rootless
    if not args.now:
        raise BundleError("say when: bundle backup HOST --now (the timer runs it otherwise)", 2)
    with connect(paths, args.host, args.target, args.accept_new) as server:
        report = do_backup_now(server, rootless)
    if args.json:
        emit_json(report.to_json())
    else:
        if not args.quiet:
            for line in report.journal:
                print(f"  {line}")
            print(f"{args.host}: backup ok in {report.seconds} s")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    cfg = read_config(paths, args.host)
    repository = None
    if args.from_host:
        source = load_stack(paths, args.from_host).backup  # turned off there is fine
        if source is None:
            raise BundleError(f"{args.from_host}: the stack has no [backup] table to read from", 2)
        repository = source.repository
    if args.service and args.service not in cfg["services"]:
        raise BundleError(
            f"{args.host}: {args.service!r} has no backed-up volumes; one of: "
            f"{', '.join(cfg['services'])}",
            2,
        )
    if not args.list and bool(args.service) == args.all:
        raise BundleError("give a SERVICE, or --all (every service), or --list", 2)
    with connect(paths, args.host, args.target, args.accept_new) as server:
        if args.list:
            listing = do_list(server, args.service, args.from_host, repository)
        else:
            report = do_restore(
                server,
                args.service,
                args.snapshot,
                args.from_host,
                repository,
                cfg["stack"].host.rootless,
            )
    if args.list:
        if args.json:
            emit_json(listing.to_json())
        else:
            _print_list(listing)
    elif args.json:
        emit_json(report.to_json())
    elif not args.quiet:
        for line in report.journal:
            print(f"  {line}")
        print(f"{args.host}: restored {report.service} in {report.seconds} s")
    return 0


def _print_list(listing: SnapshotList) -> None:
    if not listing.snapshots:
        print(f"{listing.host}: no snapshots of {', '.join(listing.volumes)} yet")
        return
    runs: dict[str, list[BackupSnapshot]] = {}
    for s in listing.snapshots:
        runs.setdefault(s.run or s.short_id, []).append(s)
    print(f"{'RUN':<18}  {'TIME (UTC)':<19}  SNAPSHOTS (volume=id)")
    for run, items in runs.items():
        shown = " ".join(f"{s.volume}={s.short_id}" for s in items)
        print(f"{run:<18}  {items[0].time:<19}  {shown}")
