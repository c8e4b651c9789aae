"""The command line of the backup program: `run` (the default), `list`, `restore`, and the
hidden `_volume` a rootless run starts inside the user namespace (volumes.py).

A failure is one line on stdout, `error: ...`, for the journal and `bundle backup`/`restore`;
exit 1 when it failed, 2 when it was started wrongly.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

from ..errors import Failed
from .backup_run import cmd_backup
from .commands import Interrupted, say
from .config import Setup, load_config, parse_json
from .paths import PLAN
from .restore import cmd_list, cmd_restore
from .tools import Snapshot, make_tool
from .volumes import INNER, backup_volume, private_run, restore_volume

DESCRIPTION = (
    "Backups and restores of one host's volumes, run on the server (python3 standard library only)."
)


def cmd_inner(setup: Setup, job: dict[str, Any]) -> int:
    """The process inside the user namespace: one volume, then "ok: WHAT HAPPENED"."""
    try:
        private_run()
    except OSError as exc:
        raise Failed(f"preparing /run/bundle-backup in a private mount namespace: {exc}") from None
    tool = make_tool(setup.cfg, job.get("repository"))
    if job["op"] == "backup":
        say(f"ok: {backup_volume(setup, tool, job['volume'], job['run'])}")
    else:
        restore_volume(setup, tool, job["volume"], Snapshot(**job["snapshot"]))
        say("ok: restored")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backup.py", description=DESCRIPTION)
    parser.add_argument("--config", type=Path, default=None, help="default: backup.json beside me")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="back up every volume now (the default)")
    p = sub.add_parser("list", help="the snapshots (of SERVICE's volumes), as JSON")
    p.add_argument("service", nargs="?")
    p.add_argument("--from-host", help="snapshots another host made (moving a service)")
    p.add_argument("--repository", help="another repository (the other host's)")
    p = sub.add_parser("restore", help="stop SERVICE, put its volumes back, start it")
    p.add_argument("service", nargs="?")
    p.add_argument("--all", action="store_true", help="every service with backed-up volumes")
    p.add_argument("--snapshot", help="a run (20261125T030000Z) or a snapshot id; default: latest")
    p.add_argument("--from-host", help="snapshots another host made (moving a service)")
    p.add_argument("--repository", help="another repository (the other host's)")
    p = sub.add_parser(INNER)  # started by in_user_namespace(), not by a person
    p.add_argument("job")
    args = parser.parse_args(argv)

    def interrupted(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must not cut a restore
    try:
        path = args.config or PLAN
        setup = Setup(load_config(path), path, inside=args.command == INNER)
        cfg = setup.cfg
        if setup.inside:
            return cmd_inner(setup, parse_json(args.job, "the job"))
        if setup.rootless and os.geteuid() == 0:
            say(
                f"error: {cfg['host']} is rootless: run me as its user "
                f"({cfg.get('user') or 'the ssh_user'}), whose systemd runs the containers"
            )
            return 2
        if not setup.rootless and os.geteuid() != 0:
            say("error: run me as root (I stop containers and mount volumes)")
            return 2
        if setup.rootless:  # started from an SSH command rather than the user's manager
            os.environ.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        if args.command in (None, "run"):
            return cmd_backup(setup)
        if args.command == "list":
            return cmd_list(cfg, args.service, args.from_host, args.repository)
        if args.all == bool(args.service):
            say("error: restore SERVICE, or restore --all")
            return 2
        return cmd_restore(setup, args.service, args.snapshot, args.from_host, args.repository)
    except Failed as exc:
        say(f"error: {exc.message}")
        return 1
    except Interrupted as exc:
        say(f"error: interrupted ({exc}); containers that were stopped were started again")
        return 1
