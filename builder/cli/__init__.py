"""The `bundle` command. Errors become one line each and an exit code; --debug shows tracebacks.

Start-up: the parser (cli/parser.py) needs only argparse, so `--help` and `--version` end before
anything else loads; a command's own modules (attrs, cattrs, Jinja2, paramiko, zstandard) load
only when that command runs (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from builder.base.words import plural
from builder.cli.parser import command_named, make_parser
from builder.deploy import progress

if TYPE_CHECKING:
    from builder.base.errors import BundleError

__all__ = ["main", "make_parser"]


# commands whose output is the answer the user asked for: --quiet keeps it
PRINTS_DATA = frozenset(
    {"status", "generations", "diff", "show", "log", "plan", "outdated", "completion", "__complete"}
)


def asked_for_output(args: argparse.Namespace) -> bool:
    return (
        args.command in PRINTS_DATA
        or getattr(args, "json", False)
        or getattr(args, "list", False)  # restore --list
        or getattr(args, "secrets_command", None) == "list"
    )


@contextlib.contextmanager
def quieted(quiet: bool) -> Iterator[None]:
    """--quiet: what a command prints on stdout goes nowhere; errors (stderr) still show."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = make_parser(only=command_named(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    selectors = getattr(args, "hosts", None) or []
    one_host = (
        len(selectors) <= 1
        and not getattr(args, "all", False)
        and not any(h.startswith("@") for h in selectors)
    )
    progress.ENABLED = (
        sys.stderr.isatty() and one_host and not args.quiet and not getattr(args, "json", False)
    )
    args.parser = parser  # `__complete` lists the commands and options of this parser
    module, name = args.func.split(":")
    run = getattr(importlib.import_module(f"builder.commands.{module}"), name)
    try:
        with quieted(args.quiet and not asked_for_output(args)):
            return int(run(args))
    except BrokenPipeError:
        # the reader (head, less) went away: not an error, and no traceback on exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; nothing half-done was kept", file=sys.stderr)
        return 130
    except Exception as exc:
        # start-up: the errors' module (attrs) only once a command fails; `completion` needs none
        from builder.base.errors import BundleError

        if args.debug or not isinstance(exc, BundleError):
            raise
        return report_error(exc, args)


def report_error(exc: BundleError, args: argparse.Namespace) -> int:
    """A failed command's error as lines on stderr (and a deploy's report with --json)."""
    # start-up: as in main, the errors' module only once a command fails
    from builder.base.errors import StackError

    if isinstance(exc, StackError):
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(
            f"{plural(len(exc.problems), 'problem')}; nothing was built or changed", file=sys.stderr
        )
        return exc.exit_code
    report = getattr(exc, "report", None)
    if report is not None and getattr(args, "json", False):
        # start-up: json only for a failed deploy's report
        import json

        # a failed or rolled-back deploy still says what it did
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"error: {exc}", file=sys.stderr)
    return exc.exit_code
