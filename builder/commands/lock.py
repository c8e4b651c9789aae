"""`bundle lock` and `bundle update`: image digests in the lock, versions in the stack files."""

from __future__ import annotations

import argparse

from builder.commands.common import paths_from
from builder.images.lock import run_lock
from builder.images.update import run_update


def cmd_lock(args: argparse.Namespace) -> int:
    return run_lock(paths_from(args), args.hosts)


def cmd_update(args: argparse.Namespace) -> int:
    return run_update(paths_from(args), args.hosts, args.major, args.only, args.dry_run)
