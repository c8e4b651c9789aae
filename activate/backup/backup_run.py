"""A backup run (`run`, the default; backup.service): every group of volumes, each with its
containers stopped (method "stop"), or all snapshotted together first (method "snapshot")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import Failed
from .commands import Interrupted, say
from .config import Setup, healthcheck_url
from .filesystems import FsSnapshot, create_snapshot, mount_snapshot, remove_snapshot, snapshot_plan
from .outcome import ping, record, write_metric
from .tools import Tool, make_tool
from .units import locked, stopped
from .volumes import backup_volume, bound, volume_path


def run_id_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def backup_group(setup: Setup, tool: Tool, group: dict[str, Any], run_id: str) -> None:
    cfg = setup.cfg
    say(f"group {group['name']}: volumes {', '.join(group['volumes'])}")
    with (
        locked(cfg["state_dir"], f"backup of {group['name']}"),
        stopped(setup.rootless, cfg["units"], group["units"]),
    ):
        for volume in group["volumes"]:
            say(f"{volume}: {backup_volume(setup, tool, volume, run_id)}")


def backup_snapshotted(
    setup: Setup, tool: Tool, groups: list[dict[str, Any]], run_id: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Method "snapshot": the groups whose volumes can be snapshotted are stopped together only
    while the snapshots are taken; returns the groups left for "stop", and the errors."""
    paths: dict[str, Path] = {}
    plans: dict[str, tuple[str, str, str] | None] = {}
    for group in groups:
        for volume in group["volumes"]:
            with volume_path(volume) as path:
                paths[volume] = path
                plans[volume] = snapshot_plan(path)
    able = [g for g in groups if all(plans[v] for v in g["volumes"])]
    left = [g for g in groups if g not in able]
    for g in left:
        for v in g["volumes"]:
            if plans[v] is None:
                say(f"{v}: neither LVM nor btrfs under {paths[v]}: stopping {g['name']} instead")
    if not able:
        return left, []
    units = sorted({u for g in able for u in g["units"]})
    taken: dict[tuple[str, str], FsSnapshot] = {}
    errors: list[str] = []
    cfg = setup.cfg
    try:
        with (
            locked(cfg["state_dir"], "backup snapshots"),
            stopped(setup.rootless, cfg["units"], units),
        ):
            for g in able:
                for v in g["volumes"]:
                    kind, key, target = plans[v]  # type: ignore[misc]
                    if (kind, key) not in taken:
                        say(f"snapshot of {key} ({kind})")
                        taken[(kind, key)] = create_snapshot(
                            kind, key, target, cfg.get("snapshot_size") or "10%ORIGIN"
                        )
        for snap in taken.values():
            mount_snapshot(snap)
        for g in able:
            for v in g["volumes"]:
                kind, key, _ = plans[v]  # type: ignore[misc]
                view = taken[(kind, key)].view(paths[v])
                try:
                    with bound(view, v) as stable:
                        say(f"{v}: {tool.backup(v, stable, run_id)} (from the {kind} snapshot)")
                except Failed as exc:
                    errors.append(f"{v}: {exc}")
    finally:
        for snap in taken.values():
            remove_snapshot(snap)
    return left, errors


def cmd_backup(setup: Setup) -> int:
    cfg = setup.cfg
    url = healthcheck_url(cfg)
    ping(url, "/start")
    started = time.time()
    run_id = run_id_now()
    errors: list[str] = []
    say(f"backup run {run_id} of {cfg['host']} with {cfg['tool']} to {cfg['repository']}")
    try:
        tool = make_tool(cfg)
        tool.open(create=True)
        groups = list(cfg["groups"])
        if cfg.get("method") == "snapshot":
            groups, errors = backup_snapshotted(setup, tool, groups, run_id)
        for group in groups:
            try:
                backup_group(setup, tool, group, run_id)
            except Failed as exc:
                errors.append(f"{group['name']}: {exc}")
        if not errors:
            tool.forget()
    except Failed as exc:
        errors.append(str(exc))
    except Interrupted:
        errors.append("interrupted (the unit was stopped or timed out)")
    seconds = round(time.time() - started, 1)
    record(
        cfg,
        {
            "run": run_id,
            "result": "failed" if errors else "ok",
            "errors": errors,
            "seconds": seconds,
        },
    )
    if errors:
        for line in errors:
            say(f"error: {line}")
        say(f"backup run {run_id} FAILED after {seconds} s")
        ping(url, "/fail", "\n".join(errors))
        return 1
    write_metric(cfg, time.time())
    say(f"backup run {run_id} ok: {len(cfg['volumes'])} volume(s) in {seconds} s")
    ping(url, "")
    return 0
