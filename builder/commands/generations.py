"""`bundle generations`, `show` and `diff`: what the built (or pushed) generations hold."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from builder.bundle import index, listing
from builder.commands.common import (
    emit_json,
    human_size,
    paths_from,
    print_repaired,
    project_dirs,
    use_colour,
)

if TYPE_CHECKING:
    from activate.protocol import GenerationRow


def cmd_generations(args: argparse.Namespace) -> int:
    if args.remote:
        return _remote_generations(args, paths_from(args))
    # the folder listing, the build log and the index: no model and no manifest parsed
    folder = project_dirs(args)[1] / args.host
    gens = listing.generation_dirs(folder)
    times = listing.build_times(folder)
    by_name = {g.name: g for g in gens}
    units = index.in_step(folder, by_name, lambda name: _units_in(folder.name, by_name[name]))
    rows: list[dict[str, Any]] = []
    for gen in gens:
        rows.append(
            {
                "generation": gen.number,
                "hash": gen.short,
                "built_at": times.get(gen.name),
                "size": gen.archive.stat().st_size if gen.archive.exists() else None,
                "units": units[gen.name],
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


def _units_in(host: str, built: listing.Built) -> int:
    """Units of a generation the index lacks, from its manifest (read as `show` reads it)."""
    # start-up: the store (attrs) only for a generation the index does not know yet
    from builder.bundle.store import Generation

    return len(Generation(host, *built).manifest()["units"])


def _remote_generations(args: argparse.Namespace, paths: Any) -> int:
    # start-up: the deployer (paramiko, cattrs) only for --remote; the local list reads files
    from builder.bundle.store import Store
    from builder.deploy.deployer import connect, do_remote_generations

    with connect(paths, args.host, args.target, args.accept_new) as server:
        rows = do_remote_generations(server, Store(paths.bundles_dir, args.host))
    for what in server.repaired:
        print_repaired(args, what)
    if args.json:
        emit_json([row.to_json() for row in rows])
        return 0
    if not rows:
        print(f"{args.host}: the server has no generations yet; run `bundle push {args.host}`")
        return 0
    print(f"{'GEN':>5}  {'HASH':<12}  {'BUILT AT':<20}  {'UNITS':>5}")
    for row in rows:
        print(_remote_row(row))
    return 0


def _remote_row(row: GenerationRow) -> str:
    mark = "  (active)" if row.active else "  (rollback target)" if row.rollback_target else ""
    return (
        f"{row.generation:>5}  {(row.hash or '')[:12]:<12}  "
        f"{row.built_at or '-':<20}  {row.units or 0:>5}{mark}"
    )


def cmd_diff(args: argparse.Namespace) -> int:
    # start-up: the store, the manifest types and the diff only for `diff`, not `generations`
    from builder.base.errors import BundleError
    from builder.bundle.diff import diff_generations, format_text
    from builder.bundle.store import Store

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
    d = diff_generations(args.host, old.load_manifest(), new.load_manifest(), old.read, new.read)
    if args.json:
        emit_json(d.to_json())
    else:
        sys.stdout.write(format_text(d, use_colour(sys.stdout), stat=args.stat))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    # start-up: as in cmd_diff, the store only for the commands that read manifests
    from builder.base.errors import BundleError
    from builder.bundle.store import Store

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
