"""The `bundle` command. Errors become one line each and an exit code; --debug shows tracebacks."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from builder.errors import BundleError, StackError
from builder.words import change, plural

EXAMPLES = """examples:
  bundle build vps1                 build stacks/vps1.toml into the next generation
  bundle switch vps1                build, push and activate in one go
  bundle rollback vps1              back to the previously active generation
  bundle status vps1                what the server runs
  bundle diff vps1                  what changed between the last two generations
  bundle diff vps1 1 2 --stat       any two generations, one line per file
  bundle generations vps1           list the built generations
  bundle check vps1                 validate only (exit 0 or 2)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a misspelt command is one line with the nearest listed command."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if not isinstance(action, argparse._SubParsersAction) or value in (choices or {}):
            return super()._check_value(action, value)
        listed = [name for name in choices or {} if not name.startswith("_")]  # not __complete
        near = difflib.get_close_matches(value, listed, n=1, cutoff=0.6)
        hint = (
            f"did you mean `{self.prog} {near[0]}`?" if near else f"`{self.prog} --help` lists them"
        )
        print(f"error: unknown command {value!r}; {hint}", file=sys.stderr)
        raise SystemExit(2)


def find_project(start: Path) -> Path:
    """The nearest folder, from `start` upwards, that has a stacks/ folder."""
    for folder in (start, *start.parents):
        if (folder / "stacks").is_dir():
            return folder
    return start


def paths_from(args: argparse.Namespace) -> Any:
    from builder.build import Paths

    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    bundles = Path(args.bundles or os.environ.get("BUNDLE_BUNDLES") or root / "bundles")
    if not stacks.is_dir():
        raise BundleError(
            f"{stacks}: no stacks folder here; run bundle in your project or pass --stacks DIR", 2
        )
    return Paths(stacks, bundles)


def use_colour(stream: Any) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def cmd_build(args: argparse.Namespace) -> int:
    from builder.build import build

    paths = paths_from(args)
    results = []
    for host in args.hosts:
        r = build(paths, host)
        manifest = r.generation.manifest()
        info = {
            "host": host,
            "generation": r.generation.number,
            "hash": r.bundle_hash,
            "created": r.created,
            "path": str(r.generation.path),
            "archive": str(r.generation.archive),
            "archive_size": r.generation.archive.stat().st_size,
            "units": len(manifest["units"]),
        }
        from builder.secrets_cli import build_note, unset_secrets

        info["secrets_unset"] = unset_secrets(manifest)
        results.append(info)
        if args.json:
            continue
        if r.created:
            print(
                f"{host}: built generation {info['generation']} ({r.bundle_hash[:12]}), "
                f"{plural(info['units'], 'unit')}, archive {human_size(info['archive_size'])}"
            )
            if not args.quiet:
                print(f"  {r.generation.path}")
        elif not args.quiet:
            print(f"{host} is up to date at generation {info['generation']} ({r.bundle_hash[:12]})")
        note = build_note(host, manifest)
        if note and not args.quiet:
            print(note)
    if args.json:
        emit_json(results if len(results) > 1 else results[0])
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from builder.build import check

    paths = paths_from(args)
    for host in args.hosts:
        _stack, rendered = check(paths, host)
        if not args.quiet:
            print(
                f"{host}: ok, {plural(len(rendered.units), 'unit')}, "
                f"{plural(len(rendered.images), 'image')}"
            )
    return 0


def cmd_generations(args: argparse.Namespace) -> int:
    from builder.store import Store

    paths = paths_from(args)
    if args.remote:
        return _remote_generations(args, paths)
    store = Store(paths.bundles_dir, args.host)
    gens = store.generations()
    times = store.build_times()
    rows = []
    for gen in gens:
        manifest = gen.manifest()
        rows.append(
            {
                "generation": gen.number,
                "hash": gen.hash12,
                "built_at": times.get(gen.name),
                "size": gen.archive.stat().st_size if gen.archive.exists() else None,
                "units": len(manifest["units"]),
                "latest": gen is gens[-1],
            }
        )
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print(f"{args.host}: no generations built yet; run `bundle build {args.host}`")
        return 0
    print(f"{'GEN':>5}  {'HASH':<12}  {'BUILT AT':<20}  {'SIZE':>9}  {'UNITS':>5}")
    for row in rows:
        mark = "  (latest)" if row["latest"] else ""
        size = human_size(row["size"]) if row["size"] is not None else "-"
        print(
            f"{row['generation']:>5}  {row['hash']:<12}  {row['built_at'] or '-':<20}  {size:>9}  {row['units']:>5}{mark}"
        )
    return 0


def _remote_generations(args: argparse.Namespace, paths: Any) -> int:
    from builder.deploy import connect, do_remote_generations
    from builder.store import Store

    with connect(paths, args.host, args.target, args.accept_new) as server:
        rows = do_remote_generations(server, Store(paths.bundles_dir, args.host))
    for what in server.repaired:
        _print_repaired(args, what)
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print(f"{args.host}: the server has no generations yet; run `bundle push {args.host}`")
        return 0
    print(f"{'GEN':>5}  {'HASH':<12}  {'BUILT AT':<20}  {'UNITS':>5}")
    for row in rows:
        mark = (
            "  (active)"
            if row.get("active")
            else "  (rollback target)"
            if row.get("rollback_target")
            else ""
        )
        print(
            f"{row['generation']:>5}  {(row.get('hash') or '')[:12]:<12}  "
            f"{row.get('built_at') or '-':<20}  {row.get('units') or 0:>5}{mark}"
        )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from builder.diff import diff_generations, format_text
    from builder.manifest import bundle_hash
    from builder.store import Store

    paths = paths_from(args)
    store = Store(paths.bundles_dir, args.host)
    if args.new is not None:
        old, new = store.get(args.old), store.get(args.new)
    elif args.old is not None:
        latest = store.latest()
        if latest is None:
            raise BundleError(
                f"{args.host}: no generations built yet; run `bundle build {args.host}`", 2
            )
        old, new = store.get(args.old), latest
    else:
        gens = store.generations()
        if len(gens) < 2:
            raise BundleError(
                f"{args.host}: diff needs two generations, {len(gens)} built; change the stack and build again",
                2,
            )
        old, new = gens[-2], gens[-1]
    old_m, new_m = old.manifest(), new.manifest()
    d = diff_generations(
        args.host, old_m, new_m, old.read, new.read, bundle_hash(old_m), bundle_hash(new_m)
    )
    if args.json:
        emit_json(d.to_json())
    else:
        sys.stdout.write(format_text(d, use_colour(sys.stdout), stat=args.stat))
    return 0


def _summary(report: dict[str, Any]) -> str:
    plan = report.get("plan") or {}
    parts = []
    for key, label in (("restart", "restarted"), ("start", "started"), ("stop", "stopped")):
        if plan.get(key):
            parts.append(f"{label} {', '.join(plan[key])}")
    parts.append(f"{plural(len(plan.get('leave', [])), 'unit')} left running untouched")
    if report.get("services") == "not managed":
        parts.append("files only (services not managed)")
    return "; ".join(parts)


def _deploy_args(args: argparse.Namespace) -> tuple[Any, str]:
    return paths_from(args), args.host


def cmd_push(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_push, local_generation

    def job(paths: Any, host: str) -> dict[str, Any]:
        gen = local_generation(paths, host, args.generation)
        with connect(paths, host, _target_for(args, host), args.accept_new) as server:
            return {**do_push(server, gen), "where": server.where}

    def show(report: dict[str, Any]) -> None:
        host, n = report["host"], report["generation"]
        if report["already_present"]:
            print(
                f"{host}: generation {n} is already on {report['where']} ({human_size(report['bytes_sent'])} sent)"
            )
        else:
            print(
                f"{host}: pushed generation {n} ({report['hash'][:12]}) to {report['where']}: "
                f"{report['objects_sent']} of {plural(report['objects_total'], 'file')} sent, {human_size(report['bytes_sent'])}; "
                f"not active yet (bundle activate {host} --generation {n})"
            )
        if report.get("switcher_repaired"):
            _print_repaired(args, report["switcher_repaired"])

    return _for_hosts(args, job, show)


def cmd_activate(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_activate, local_generation

    paths, host = _deploy_args(args)
    gen = local_generation(paths, host, args.generation)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = do_activate(server, gen, args.force, _safety(args))
    _print_switch(args, report, host)
    return 0


def _print_repaired(args: argparse.Namespace, what: str) -> None:
    # shown even with --quiet (on stderr then): the server was damaged and this command fixed it
    aside = args.quiet or getattr(args, "json", False)  # --json keeps stdout for the JSON
    print(f"  repaired first: {what}", file=sys.stderr if aside else sys.stdout)


def _repaired_of(server: Any) -> dict[str, str]:
    """What running the switcher fixed on the server first, as a report key (none: empty)."""
    return {"switcher_repaired": "; ".join(server.repaired)} if server.repaired else {}


def _print_switch(args: argparse.Namespace, report: dict[str, Any], host: str) -> None:
    if args.json:
        emit_json(report)
        return
    print(
        f"{host}: {report['action']} {change(report.get('from'), report['to'])}: {report.get('result', 'ok')}"
    )
    repaired = (report.get("push") or {}).get("switcher_repaired")
    if repaired:
        _print_repaired(args, repaired)
    if not args.quiet:
        print(f"  {_summary(report)}")
        for line in _safety_lines(report):
            print(f"  {line}")
        for warning in report.get("warnings", []):
            print(f"  warning: {warning}")


def _safety_lines(report: dict[str, Any]) -> list[str]:
    """What the health gate, the dead-man and the data snapshots did (docs/reliability.md)."""
    lines = []
    health = report.get("health") or {}
    if health and not health.get("skipped"):
        checks = [c for c in health.get("checks", []) if c.get("kind") != "unit"]
        confirmed = "; confirmed over a new connection" if report.get("confirmed") else ""
        lines.append(
            f"health: every unit up and {plural(len(checks), 'check')} passed in "
            f"{health.get('seconds', 0):.1f} s{confirmed}"
        )
    kept = report.get("snapshot")
    if kept:
        lines.append(f"data kept before the switch: {', '.join(kept['units'])} in {kept['path']}")
    for r in report.get("restored", []):
        lines.append(
            f"data restored: {r['unit']} from {r['path']} (the data it replaced is kept in "
            f"{r['replaced_data_kept_in']})"
        )
    return lines


def _safety(args: argparse.Namespace) -> Any:
    from builder.deploy import Safety

    for flag, value in (
        ("--health-timeout", args.health_timeout),
        ("--confirm-timeout", args.confirm_timeout),
    ):
        if value is not None and value < (1 if flag == "--health-timeout" else 0):
            raise BundleError(
                f"{flag} must be at least {1 if flag == '--health-timeout' else 0}", 2
            )
    return Safety(args.no_rollback, args.health_timeout, args.confirm_timeout)


def add_safety(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-rollback",
        action="store_true",
        help="failed health checks leave the new generation active (for debugging); no dead-man",
    )
    p.add_argument(
        "--health-timeout",
        type=int,
        metavar="S",
        help="seconds the health checks may take (default: [host] health_timeout, 60)",
    )
    p.add_argument(
        "--confirm-timeout",
        type=int,
        metavar="S",
        help="seconds the server waits for this deploy to confirm over a new connection before "
        "rolling back by itself (default: [host] confirm_timeout, 30; 0: no dead-man)",
    )


def cmd_switch(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_switch

    def job(paths: Any, host: str) -> dict[str, Any]:
        with connect(paths, host, _target_for(args, host), args.accept_new) as server:
            return do_switch(paths, server, args.force, _safety(args))

    return _for_hosts(args, job, lambda report: _print_switch(args, report, report["host"]))


def cmd_rollback(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_rollback

    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = do_rollback(server, args.to, args.force, args.restore_data, _safety(args))
    _print_switch(args, report, host)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_status
    from builder.store import Store

    def job(paths: Any, host: str) -> dict[str, Any]:
        with connect(paths, host, _target_for(args, host), args.accept_new) as server:
            return {
                **do_status(server, Store(paths.bundles_dir, host).latest()),
                "where": server.where,
                **_repaired_of(server),
            }

    return _for_hosts(args, job, lambda report: _print_status(args, report))


def _print_status(args: argparse.Namespace, report: dict[str, Any]) -> None:
    host = report["host"]
    if report["current"] is None:
        print(f"{host}: no generation is active on {report['where']}")
    else:
        print(
            f"{host}: generation {report['current']} ({(report['hash'] or '')[:12]}) is active on {report['where']}"
        )
    if report.get("switcher_repaired"):
        _print_repaired(args, report["switcher_repaired"])
    if report["current"] is None:
        return
    last = report.get("last")
    if last:
        print(
            f"  last deploy: {last.get('time')} {last.get('action')} {change(last.get('from'), last.get('to'))}: {last.get('result')}"
        )
    for line in report.get("drift", []):
        print(f"  drift: {line}")
    if report.get("interrupted"):
        print(
            f"  an activation was interrupted: {report['interrupted']}; the next switch finishes or undoes it"
        )
    repaired = report.get("recovered")
    if repaired and repaired.get("error"):
        print(f"  could not repair a switch that was killed halfway: {repaired['error']}")
    elif repaired:  # the switcher repaired a switch that was killed halfway, then reported
        print(f"  repaired first: {repaired['detail']}: {repaired['result']}")
    if report.get("switching"):
        print(f"  a switch is running now: {report['switching']}")
    if report["units"]:
        width = max(len(k) for k in report["units"])
        for key, unit in report["units"].items():
            state = f"{unit['active'] or '?'}/{unit['sub'] or '?'}"
            pid = f"pid {unit['main_pid']}" if unit.get("main_pid") else ""
            print(f"  {key.ljust(width)}  {state:<20} {pid}")


def cmd_gc(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_gc

    paths, host = _deploy_args(args)
    if args.keep < 1:
        raise BundleError("--keep must be at least 1", 2)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = {**do_gc(paths, server, args.keep), **_repaired_of(server)}
    if args.json:
        emit_json(report)
    else:
        removed, local = report["server"].get("removed", []), report["local_removed"]
        print(
            f"{host}: removed {plural(len(removed), 'generation')} on the server{_listed(removed)}, "
            f"{plural(report['server'].get('objects_removed', 0), 'unused file')}; "
            f"{plural(len(local), 'local generation')}{_listed(local)}"
        )
        if report.get("switcher_repaired"):
            _print_repaired(args, report["switcher_repaired"])
    return 0


def _listed(numbers: list[int]) -> str:
    return f" ({', '.join(map(str, numbers))})" if numbers else ""


def cmd_plan(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_plan

    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        report = do_plan(paths, server, args.generation)
    if args.json:
        emit_json(report)
        return 0
    plan = report["plan"]
    now = f"now {report['from']}" if report.get("from") is not None else "first deploy"
    print(f"{host}: activating {report['to']} ({now}) would:")
    for key, label in (
        ("stop", "stop"),
        ("start", "start"),
        ("restart", "restart"),
        ("leave", "leave alone"),
    ):
        for unit in plan.get(key, []):
            reason = plan.get("reasons", {}).get(unit, "")
            print(f"  {label:<13} {unit}" + (f"  ({reason})" if reason and key != "leave" else ""))
    for line in report.get("drift", []):
        print(f"  hand edit:    {line}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from builder.deploy import connect, do_log
    from builder.store import Store

    paths, host = _deploy_args(args)
    with connect(paths, host, args.target, args.accept_new) as server:
        entries = do_log(server, Store(paths.bundles_dir, host).latest(), args.limit)
    for what in server.repaired:
        _print_repaired(args, what)
    if args.json:
        emit_json(entries)
        return 0
    if not entries:
        print(f"{host}: no deploys yet")
    for e in entries:
        message = f"  {e['message']}" if e.get("message") else ""
        print(
            f"{e.get('time', '?')}  {e.get('user', '?'):<8} {e.get('action', '?'):<9} "
            f"{change(e.get('from'), e.get('to'))}  {e.get('result', '?')}{message}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from builder.store import Store

    paths = paths_from(args)
    store = Store(paths.bundles_dir, args.host)
    gen = store.get(args.generation) if args.generation is not None else store.latest()
    if gen is None:
        raise BundleError(
            f"{args.host}: no generation built yet; run `bundle build {args.host}`", 2
        )
    manifest = gen.manifest()
    units = manifest["units"]
    if args.unit is None:
        if args.json:
            emit_json({"generation": gen.number, "units": units, "files": manifest["files"]})
            return 0
        print(f"{args.host}: generation {gen.number} ({gen.hash12}), {gen.path}")
        for key, unit in units.items():
            extra = [f for f in unit["files"] if f != unit["path"]]
            print(
                f"  {key:<32} {unit['service']:<34} {'image ' + unit['image'] if unit['image'] else ''}"
            )
            for f in extra:
                print(f"      uses {f}")
        return 0
    key = (
        args.unit
        if args.unit in units
        else next(
            (k for k, u in units.items() if args.unit in (u["service"], k.rsplit(".", 1)[0])), None
        )
    )
    if key is None:
        raise BundleError(
            f"{args.host}: generation {gen.number} has no unit {args.unit!r}; see `bundle show {args.host}`",
            2,
        )
    if args.json:
        emit_json(
            {
                "unit": key,
                **units[key],
                "contents": {f: gen.read(f).decode(errors="replace") for f in units[key]["files"]},
            }
        )
        return 0
    for f in [units[key]["path"], *[f for f in units[key]["files"] if f != units[key]["path"]]]:
        print(f"# {f}")
        sys.stdout.write(gen.read(f).decode(errors="replace"))
        print()
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from builder.scaffold import scaffold

    root = Path(args.directory)
    written = scaffold(root)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        print(
            f"next: set address in {root / 'stacks/web1.toml'}, then "
            f"cd {root} && bundle check web1 && bundle build web1 (docs/getting-started.md)"
        )
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from builder.completion import script

    sys.stdout.write(script(args.shell))
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from builder import completion

    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    bundles = Path(args.bundles or os.environ.get("BUNDLE_BUNDLES") or root / "bundles")
    if args.what == "commands":
        words = completion.commands(make_parser())
    elif args.what == "options":
        words = completion.options(make_parser(), args.arg or "")
    elif args.what == "hosts":
        words = completion.hosts(stacks)
    else:
        words = completion.generations(bundles, args.arg or "")
    print("\n".join(words))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from builder.compose import import_compose, report

    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    written, result = import_compose(Path(args.compose), args.host, stacks, args.force)
    print(report(written, result, args.host))
    return 0


def cmd_outdated(args: argparse.Namespace) -> int:
    from builder.outdated import run_outdated

    return run_outdated(paths_from(args), args.hosts, args.json, args.quiet)


def _target_for(args: argparse.Namespace, host: str) -> str | None:
    # one --target for a fleet: `--target /srv/fake/{host}` gives each host its own folder
    return args.target.replace("{host}", host) if args.target else None


def _for_hosts(
    args: argparse.Namespace,
    job: Callable[[Any, str], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
) -> int:
    """One host: its report, errors as usual. Several: in parallel, a line each, then a table."""
    from builder.fleet import run_fleet, select_hosts, summary_table

    paths = paths_from(args)
    hosts = select_hosts(paths.stacks_dir, args.hosts, args.all)
    fleet = len(hosts) > 1 or args.all or any(h.startswith("@") for h in args.hosts)
    if args.target and len(hosts) > 1 and "{host}" not in args.target:
        raise BundleError(
            "--target with several hosts must contain {host}, e.g. --target /srv/fake/{host}", 2
        )
    if not fleet:
        report = job(paths, hosts[0])
        emit_json(report) if args.json else show(report)
        return 0

    def done(outcome: Any) -> None:
        if args.json or (args.quiet and outcome.ok):
            return
        if outcome.ok:
            show(outcome.report)
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


def add_hosts(p: argparse.ArgumentParser) -> None:
    p.add_argument("hosts", nargs="*", metavar="HOST", help="host names or @tag")
    p.add_argument("--all", action="store_true", help="every host in stacks/")
    p.add_argument(
        "--parallel", type=int, default=10, metavar="N", help="hosts at a time (default 10)"
    )
    p.add_argument("--fail-fast", action="store_true", help="start no more hosts after one fails")


def cmd_demo(args: argparse.Namespace) -> int:
    from builder.demo import run_demo

    run_demo(lambda line: print(line, flush=True), keep=args.keep)
    return 0


def add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        metavar="URL|DIR",
        help="ssh://user@host:port or a folder standing in for the server's root, instead of the host's address",
    )
    p.add_argument(
        "--accept-new", action="store_true", help="trust and remember an unknown SSH host key"
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")


def add_common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # options may come before or after the command; a subcommand must not reset them
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--stacks", metavar="DIR", help="stacks folder (default: ./stacks)", **d)
    p.add_argument("--bundles", metavar="DIR", help="build output (default: ./bundles)", **d)
    p.add_argument("--debug", action="store_true", help="show tracebacks", **d)
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors", **d)
    p.add_argument("-v", "--verbose", action="store_true", help="say more", **d)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bundle",
        description="Build per-host TOML stacks into content-hashed bundles of podman quadlet units.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, top=True)
    from builder.version import version

    parser.add_argument("--version", action="version", version=f"bundle {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str, example: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common(p)
        p.set_defaults(func=func)
        return p

    p = command(
        "init",
        cmd_init,
        "start a project: an example host, a shared service and a staging variant",
        "bundle init myinfra",
    )
    p.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: here")

    p = command(
        "demo",
        cmd_demo,
        "try bundle without a VPS: a throwaway local server, narrated (needs root)",
        "sudo bundle demo",
    )
    p.add_argument("--keep", action="store_true", help="leave the server running at the end")

    p = command("build", cmd_build, "build hosts' stacks into new generations", "bundle build vps1")
    p.add_argument("hosts", nargs="+", metavar="HOST")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "check",
        cmd_check,
        "validate hosts' stacks without building (exit 0 or 2)",
        "bundle check vps1",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST")

    p = command(
        "diff", cmd_diff, "show what changed between two generations", "bundle diff vps1 6 7 --stat"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "old", nargs="?", type=int, metavar="FROM", help="default: the one before the latest"
    )
    p.add_argument("new", nargs="?", type=int, metavar="TO", help="default: the latest")
    p.add_argument("--stat", action="store_true", help="one line per changed file")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "generations",
        cmd_generations,
        "list a host's generations (built, or --remote)",
        "bundle generations vps1 --remote",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--remote", action="store_true", help="what the server has, active marked")
    add_target(p)

    p = command(
        "push",
        cmd_push,
        "copy a generation to the server; nothing is activated",
        "bundle push vps1 --generation 7",
    )
    add_hosts(p)
    p.add_argument("--generation", type=int, metavar="N", help="default: the latest built")
    add_target(p)

    p = command(
        "activate",
        cmd_activate,
        "switch the server to a pushed generation",
        "bundle activate vps1 --generation 7",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--generation", type=int, metavar="N", required=True)
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    add_safety(p)
    add_target(p)

    p = command("switch", cmd_switch, "build, push and activate in one go", "bundle switch vps1")
    add_hosts(p)
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    add_safety(p)
    add_target(p)

    p = command(
        "rollback",
        cmd_rollback,
        "go back to the previously active generation",
        "bundle rollback vps1 --to 5",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--to", type=int, metavar="N", help="any generation on the server")
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    p.add_argument(
        "--restore-data",
        action="store_true",
        help="also put back the data kept before the generations rolled back past changed an "
        "image (the data it replaces is kept too); with --to CURRENT: only the data",
    )
    add_safety(p)
    add_target(p)

    p = command(
        "status",
        cmd_status,
        "what the server runs: active generation, units, last deploy",
        "bundle status vps1 --json",
    )
    add_hosts(p)
    add_target(p)

    p = command(
        "gc", cmd_gc, "remove old generations here and on the server", "bundle gc vps1 --keep 5"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "--keep", type=int, default=5, metavar="N", help="newest generations to keep (default 5)"
    )
    add_target(p)

    p = command(
        "plan",
        cmd_plan,
        "what activation would do on the server (stop, start, restart, leave), without doing it",
        "bundle plan vps1",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--generation", type=int, metavar="N", help="default: build the stack now")
    add_target(p)

    p = command("log", cmd_log, "the server's deploy history", "bundle log vps1 --limit 20")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="last N entries (0: all)")
    add_target(p)

    p = command(
        "show", cmd_show, "the units and files of a generation", "bundle show vps1 nextcloud"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "unit",
        nargs="?",
        metavar="UNIT",
        help="a unit (nextcloud, nextcloud.container, nextcloud.service)",
    )
    p.add_argument("--generation", type=int, metavar="N", help="default: the latest built")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "import",
        cmd_import,
        "turn a docker-compose file into a stack, reporting what it could not translate",
        "bundle import compose.yml --host web2",
    )
    p.add_argument("compose", metavar="COMPOSE_FILE")
    p.add_argument("--host", required=True, metavar="NAME", help="the new host (stacks/NAME.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing stack file")

    p = command(
        "outdated",
        cmd_outdated,
        "newer image versions in the registries: pinned, newest in the same major, newest",
        "bundle outdated vps1 --json",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST", help="host names")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "completion",
        cmd_completion,
        "print a shell completion script",
        'eval "$(bundle completion bash)"',
    )
    p.add_argument("shell", choices=("bash", "zsh"))

    p = sub.add_parser("__complete")  # used by the completion scripts, not listed
    add_common(p)
    p.set_defaults(func=cmd_complete)
    p.add_argument("what", choices=("commands", "options", "hosts", "generations"))
    p.add_argument("arg", nargs="?")
    from builder.backup import register as register_backup

    register_backup(sub, command, add_target)
    from builder.secrets_cli import register as register_secrets

    register_secrets(sub, add_common)
    return parser


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
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from builder import progress

    selectors = getattr(args, "hosts", None) or []
    one_host = (
        len(selectors) <= 1
        and not getattr(args, "all", False)
        and not any(h.startswith("@") for h in selectors)
    )
    progress.ENABLED = (
        sys.stderr.isatty() and one_host and not args.quiet and not getattr(args, "json", False)
    )
    try:
        with quieted(args.quiet and not asked_for_output(args)):
            return args.func(args)
    except StackError as exc:
        if args.debug:
            raise
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(
            f"{plural(len(exc.problems), 'problem')}; nothing was built or changed", file=sys.stderr
        )
        return exc.exit_code
    except BundleError as exc:
        if args.debug:
            raise
        report = getattr(exc, "report", None)
        if report is not None and getattr(args, "json", False):
            emit_json(report)  # a failed or rolled-back deploy still says what it did
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader (head, less) went away: not an error, and no traceback on exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; nothing half-done was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
