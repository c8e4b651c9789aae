"""python3 -m activate COMMAND --state STATE --root ROOT [options]

JSON on stdout; on failure one line on stderr and exit 1 (operation failed) or 2 (bad input).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import (
    activation,
    bootgen,
    detach,
    gc,
    lock,
    receive,
    rollback,
    secrets,
    status,
    strict_json,
    watch,
)
from .detach import confirm_run, passed_on, reporting, safety_of, safety_options, start_detached
from .errors import BadInput, Failed, Reported, SwitcherError
from .protocol import Action, Goal, to_json
from .recover import recover
from .report import emit, error
from .store import Store
from .systemd import services_for

DEFAULT_STATE = Path("/var/lib/bundle")
# A sha256 list for a bundle of a million objects; more is not a request a builder sends.
HAVE_LIMIT = 80 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message}; see `python3 -m activate --help`")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state folder")
    common.add_argument("--root", type=Path, default=Path("/"), help="'/' on a real server")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument(
        "--services",
        choices=("auto", "systemd", "none"),
        default="auto",
        help="call systemctl/podman: auto = only when ROOT is '/' (others are for tests)",
    )
    parser = _Parser(
        prog="python3 -m activate",
        description="The bundle switcher: receives and activates generations on this server.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "have", parents=[common], help="stdin: sha256 list or {base, hashes}; prints the missing"
    )
    sub.add_parser(
        "receive", parents=[common], help="stdin: gzip tar of manifest.json (or a delta) + objects"
    )
    sub.add_parser(
        "secrets-have", parents=[common], help="stdin: [{name, fingerprint}]; the missing"
    )
    p = sub.add_parser("secrets-receive", parents=[common], help="stdin: secret versions to keep")
    p.add_argument("--generation", type=int, required=True, help="the generation that uses them")
    p = sub.add_parser("plan", parents=[common], help="what activate would do; changes nothing")
    p.add_argument("--generation", type=int, required=True)
    p = sub.add_parser("activate", parents=[common], help="switch to a generation")
    p.add_argument("--generation", type=int, required=True)
    p.add_argument("--force", action="store_true", help="overwrite unit files changed by hand")
    safety_options(p)
    p = sub.add_parser("confirm", parents=[common], help="confirm a detached activation")
    p.add_argument("--run", required=True, help="the run `activate --detach` printed")
    p = sub.add_parser("rollback", parents=[common], help="go back with the old switcher")
    p.add_argument("--to", type=int, default=None, help="generation (default: the previous one)")
    p.add_argument("--force", action="store_true", help="overwrite unit files changed by hand")
    p.add_argument(
        "--restore-data",
        action="store_true",
        help="also put back the data snapshots taken by the generations rolled back past",
    )
    safety_options(p)
    sub.add_parser("status", parents=[common], help="current generation and its units")
    sub.add_parser("recover", parents=[common], help="finish or undo a switch that was killed")
    sub.add_parser("health", parents=[common], help="units and checks of what runs, now, once")
    p = sub.add_parser("history", parents=[common], help="the deploy history, oldest first")
    p.add_argument("--limit", type=int, default=0, help="only the last N entries (0: all)")
    sub.add_parser("generations", parents=[common], help="list generations")
    p = sub.add_parser("gc", parents=[common], help="remove old generations and unused objects")
    p.add_argument("--keep", type=int, required=True, help="how many newest generations to keep")
    return parser


def _read_have_request() -> Any:
    data = sys.stdin.buffer.read(HAVE_LIMIT + 1) or b"null"
    return strict_json.loads(
        data, "have: stdin", "send a JSON list of sha256", expect=None, limit=HAVE_LIMIT
    )


def _action() -> Action:
    """What this activation is: a rollback's own switcher is told so by its caller."""
    named = os.environ.get(detach.ACTION_ENV) or Action.ACTIVATE
    if named not in (Action.ACTIVATE, Action.ROLLBACK):
        raise BadInput(f"{detach.ACTION_ENV}={named!r}: expected activate or rollback")
    return Action(named)


def _run(args: argparse.Namespace) -> int:
    store = Store(args.state.absolute())
    root: Path = args.root.absolute()
    services = services_for(root, args.services)
    command: str = args.command
    if command == "have":
        emit(receive.have(store, _read_have_request()).to_json())
    elif command == "receive":
        store.ensure()
        with lock.held(store.lock_path, "receive"):
            emit(receive.receive(store, sys.stdin.buffer).to_json())
    elif command == "secrets-have":
        emit(secrets.have(store, sys.stdin.buffer).to_json())
    elif command == "secrets-receive":
        store.require_exists()
        with lock.held(store.lock_path, "secrets-receive"):
            emit(secrets.receive(store, args.generation, sys.stdin.buffer, root).to_json())
    elif command == "plan":
        emit(activation.preview(store, root, services, args.generation).to_json())
    elif command == "activate":
        store.require_exists()
        action = _action()
        if args.goal == Goal.BOOT:  # nothing running changes: no gate, no dead-man to detach for
            with lock.held(store.lock_path, f"boot {args.generation}"):
                booted = bootgen.record_boot(store, root, services, args.generation, args.force)
            emit(booted.to_json())
            return 0
        if args.detach and services.managed:
            target = store.find(args.generation)
            emit(start_detached(store, target, root, action, passed_on(args)))
            return 0
        safety = safety_of(args, store)
        with reporting(safety.run), lock.held(store.lock_path, f"{action} {args.generation}"):
            report = activation.activate(
                store, root, services, args.generation, args.force, action, safety
            )
            if safety.run:
                safety.run.finish(report.to_json(), 0)
            emit(report.to_json())
    elif command == "confirm":
        emit(confirm_run(store, args.run))
    elif command == "rollback":
        store.require_exists()
        with lock.held(store.lock_path, "rollback (repairing an interrupted switch)"):
            recover(store, root, services)  # before choosing: the target depends on `current`
        target = rollback.choose_target(store, args.to)
        extra = ["--force"] * args.force + ["--debug"] * args.debug
        extra += ["--services", args.services] if args.services != "auto" else []
        detach = passed_on(args) if args.detach else None
        return rollback.rollback(
            store, root, services, target, extra, args.force, args.restore_data, detach
        )
    elif command == "history":
        entries = store.history()
        emit(entries[-args.limit :] if args.limit > 0 else entries)
    elif command == "status":
        emit(status.status(store, root, services).to_json())
    elif command == "health":
        emit(watch.health_now(store, services).to_json())
    elif command == "recover":
        store.require_exists()
        with lock.held(store.lock_path, "recover"):
            emit({"recovered": recover(store, root, services)})
    elif command == "generations":
        emit(to_json(status.generations(store)))
    elif command == "gc":
        store.require_exists()
        with lock.held(store.lock_path, f"gc --keep {args.keep}"):
            emit(secrets.gc(store, services, gc.gc(store, args.keep)).to_json())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _run(_parser().parse_args(argv))
    except Reported as exc:
        emit(exc.report)
        error(exc.message)
        return exc.exit_code
    except SwitcherError as exc:
        if debug:
            traceback.print_exc()
        error(exc.message)
        return exc.exit_code
    except BrokenPipeError:
        return 1  # the deployer went away; there is nobody left to tell
    except KeyboardInterrupt:
        error("interrupted; nothing was changed unless a report said so")
        return 1
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = exc.filename or "the state folder"
        error(
            f"{where}: {exc.strerror or exc}; check permissions and space (the switcher runs as root)"
        )
        return Failed.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        error(f"internal error: {type(exc).__name__}: {exc}; run again with --debug and report it")
        return 1


if __name__ == "__main__":
    sys.exit(main())
