"""What a backup run leaves behind for people and monitoring: the node-exporter metric, the
healthcheck pings and STATE/backup/last.json, each written durably (activate/durable.py)."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .. import durable
from .commands import say


def metric_text(host: str, when: float) -> str:
    """The node-exporter textfile; its contract is docs/monitoring.md's (name, label, text)."""
    name = "bundle_backup_last_success_timestamp_seconds"
    return (
        f"# HELP {name} Unix time the last successful nightly backup finished.\n"
        f"# TYPE {name} gauge\n"
        f'{name}{{host="{host}"}} {int(when)}\n'
    )


def write_metric(cfg: dict[str, Any], when: float) -> None:
    path = cfg.get("metrics_file")
    if not path:
        return
    dest = Path(path).expanduser()  # a rootless host's default is under ~
    try:
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # a hidden temp name beside it (not *.prom: node-exporter skips it), fsync, rename
        durable.write_file(dest, metric_text(cfg["host"], when).encode())
    except OSError as exc:
        say(f"warning: cannot write {dest}: {exc.strerror}")


def ping(url: str | None, suffix: str, body: str = "") -> None:
    """A healthchecks.io-style ping; never fails the backup (the ping is the messenger)."""
    if not url:
        return
    target = url + suffix
    for attempt in range(3):
        try:
            request = urllib.request.Request(target, data=body.encode()[:10000] or None)
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
            return
        except (OSError, ValueError) as exc:
            if attempt == 2:
                shown = urllib.parse.urlsplit(target)
                say(f"warning: ping to {shown.scheme}://{shown.hostname}/… failed: {exc}")
            else:
                time.sleep(2)


def record(cfg: dict[str, Any], entry: dict[str, Any]) -> None:
    folder = Path(cfg["state_dir"]) / "backup"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        durable.write_json(folder / "last.json", entry, indent=2)
