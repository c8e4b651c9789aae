"""`list` and `restore`: the snapshots of a service's volumes, and putting them back with its
containers stopped (every group with --all: what a rebuilt host needs)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import Failed
from .commands import say
from .config import Setup
from .tools import Snapshot, Tool, make_tool
from .units import ensure_volume, locked, stopped
from .volumes import restore_volume


def find_service(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    services = cfg["services"]
    if name not in services:
        raise Failed(
            f"{name!r} has no backed-up volumes on {cfg['host']}; one of: "
            f"{', '.join(sorted(services))}"
        )
    return dict(services[name])


def cmd_list(
    cfg: dict[str, Any], service: str | None, from_host: str | None, repo: str | None
) -> int:
    volumes = find_service(cfg, service)["volumes"] if service else cfg["volumes"]
    tool = make_tool(cfg, repo)
    tool.open(create=False)
    host = from_host or cfg["host"]
    snaps = [s for s in tool.snapshots("", host) if s.volume in volumes]
    rows = [
        {"id": s.id, "short_id": s.short_id, "time": s.time, "volume": s.volume, "run": s.run}
        for s in sorted(snaps, key=lambda s: (s.time, s.volume))
    ]
    say(json.dumps({"host": host, "volumes": volumes, "snapshots": rows}, sort_keys=True))
    return 0


def choose(snaps: list[Snapshot], volumes: list[str], wanted: str | None) -> dict[str, Snapshot]:
    """The snapshot to restore for each volume: the latest, those of run `wanted`, or the one
    snapshot whose id starts with `wanted` (that volume only)."""
    by_volume: dict[str, list[Snapshot]] = {v: [] for v in volumes}
    for s in snaps:
        if s.volume in by_volume:
            by_volume[s.volume].append(s)
    for v in by_volume:
        by_volume[v].sort(key=lambda s: s.time)
    if wanted is None:
        missing = [v for v, found in by_volume.items() if not found]
        if missing:
            raise Failed(f"no snapshot of {', '.join(missing)} in the repository yet")
        return {v: found[-1] for v, found in by_volume.items()}
    run_match = {v: s for v, found in by_volume.items() for s in found if s.run == wanted}
    if run_match:
        missing = [v for v in volumes if v not in run_match]
        if missing:
            raise Failed(f"run {wanted} has no snapshot of {', '.join(missing)}")
        return run_match
    id_match = [s for found in by_volume.values() for s in found if s.id.startswith(wanted)]
    if len(id_match) == 1:
        return {id_match[0].volume: id_match[0]}
    if len(id_match) > 1:
        raise Failed(f"{wanted!r} matches {len(id_match)} snapshots: give more of the id")
    raise Failed(
        f"no run or snapshot {wanted!r} among the snapshots of {', '.join(volumes)}; "
        "see the list (bundle restore HOST SERVICE --list)"
    )


def restore_service(
    setup: Setup,
    tool: Tool,
    name: str,
    service: dict[str, Any],
    snapshot: str | None,
    host: str,
) -> list[str]:
    chosen = choose(tool.snapshots("", host), service["volumes"], snapshot)
    for v, s in sorted(chosen.items()):
        say(
            f"{name}: {v} from snapshot {s.short_id} of {s.time} (run {s.run or '?'}, host {s.host})"
        )
    done = []
    cfg = setup.cfg
    with (
        locked(cfg["state_dir"], f"restore of {name}"),
        stopped(setup.rootless, cfg["units"], service["units"], start_anyway=True),
    ):
        for volume, snap in sorted(chosen.items()):
            ensure_volume(setup.rootless, volume)
            restore_volume(setup, tool, volume, snap)
            say(f"{volume}: restored")
            done.append(volume)
    return done


def cmd_restore(
    setup: Setup,
    name: str | None,
    snapshot: str | None,
    from_host: str | None,
    repo: str | None,
) -> int:
    """Restore one service, or (name None) every group: what a rebuilt host needs."""
    cfg = setup.cfg
    services = {name: find_service(cfg, name)} if name else {g["name"]: g for g in cfg["groups"]}
    tool = make_tool(cfg, repo)
    tool.open(create=False)
    host = from_host or cfg["host"]
    restored: list[str] = []
    for key, service in services.items():
        restored += restore_service(setup, tool, key, service, snapshot, host)
    say(f"restored {len(restored)} volume(s): {', '.join(restored)}")
    return 0
