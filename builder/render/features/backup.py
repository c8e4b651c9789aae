"""Backups: the stack's [backup] table becomes a timer, a unit and a program in the bundle.

Build side (called by render.py and validate.py):

* `plan(stack)`: which volumes are backed up (the named volumes of `stateful` containers), in
  which groups they are stopped together (a pod's volumes, and volumes shared by containers),
  which containers use each, and which names `bundle restore HOST SERVICE` accepts;
* `render(renderer)`: `scripts/backup.py` (a launcher of the program in activate/backup/, which
  every generation carries with the switcher),
  `scripts/backup.json` (the plan and the settings), one file per secret under
  `scripts/backup.secret/` (a placeholder the switcher completes on the server, so no value
  enters the bundle), `backup.service` and `backup.timer`;
* `problems(stack, raw)`: what is wrong with the [backup] table.

Deployer side: `bundle backup HOST --now` starts backup.service on the server and shows its
journal; `bundle restore HOST SERVICE` runs the script's restore in a transient unit (a dropped
SSH connection does not cut it halfway) and shows its journal. Either may run for hours: the
deployer follows the unit with short polls, each with the look-up deadline (builder/deploy/deadlines.py),
so a hung server is noticed within seconds. See docs/operations.md.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from builder.base.errors import Problem
from builder.render.output import BundleFile
from builder.secrets.files import marker
from builder.stack import unitfile
from builder.stack.load import KeyPath, RawStack
from builder.stack.model import Backup, Stack
from builder.stack.names import NAME, NAME_HINT, service_name, unit_file

UNIT = "backup"
SCRIPT_PATH = "scripts/backup.py"
CONFIG_PATH = "scripts/backup.json"
SECRET_DIR = "scripts/backup.secret"
TOOLS = ("restic", "kopia")
METHODS = ("stop", "snapshot")
# restic's other backends are passed through as they are; kopia's are built from these two
RESTIC_PREFIXES = ("s3:", "sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:", "/")
S3_URL = re.compile(r"^s3:(https?://)?[^/\s]+/[^/\s]+(/\S*)?\Z")
# the user of a rootless host cannot write /var/lib/node-exporter: its default is in its home
# (the script expands ~ on the server); docs/rootless.md
ROOTFUL_METRICS = "/var/lib/node-exporter/backup.prom"
ROOTLESS_METRICS = "~/.local/state/node-exporter/backup.prom"
RETENTION = re.compile(r"^[1-9][0-9]*[dh]\Z")
SECRET_KEYS = {
    "password": "password_secret",
    "s3_access_key": "s3_access_key_secret",
    "s3_secret_key": "s3_secret_key_secret",
    "healthcheck_url": "healthcheck_url_secret",
}


def metrics_file(stack: Stack, b: Backup) -> str | None:
    """Where the script writes its metric on the server (None: nowhere)."""
    if stack.host.rootless and b.metrics_file == ROOTFUL_METRICS:
        return ROOTLESS_METRICS
    return b.metrics_file or None


def active(stack: Stack) -> Backup | None:
    b = stack.backup
    return b if b is not None and b.enabled else None


# --- the plan ----------------------------------------------------------------------------------


def _named(stack: Stack, volumes: tuple[str, ...]) -> list[str]:
    return [v.split(":")[0] for v in volumes if v.split(":")[0] in stack.volumes]


def plan(stack: Stack) -> dict[str, Any]:
    """Volumes, groups (stopped and backed up together) and restorable services."""
    containers = stack.enabled_containers()
    named = {n: _named(stack, c.volumes) for n, c in containers.items()}
    stateful = {n: c for n, c in containers.items() if c.stateful and named[n]}
    volumes = sorted({v for n in stateful for v in named[n]})
    users = {v: sorted(n for n in containers if v in named[n]) for v in volumes}

    def units_of(vols: list[str]) -> list[str]:
        return sorted({service_name(n, "container") for v in vols for n in users[v]})

    # groups: a pod (or a lone container) with its volumes; two sharing a volume merge
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for n, c in stateful.items():
        for v in named[n]:
            parent[find(f"k:{c.pod or n}")] = find(f"v:{v}")
    groups: list[dict[str, Any]] = []
    for root in sorted({find(f"v:{v}") for v in volumes}):
        keys = sorted(k[2:] for k in parent if k.startswith("k:") and find(k) == root)
        vols = [v for v in volumes if find(f"v:{v}") == root]
        groups.append({"name": keys[0], "volumes": vols, "units": units_of(vols)})

    services: dict[str, dict[str, Any]] = {}
    pods: dict[str, list[str]] = {}
    for n, c in stateful.items():
        if c.pod:
            pods.setdefault(c.pod, []).extend(named[n])
    for pod, vols in pods.items():
        entry = {"volumes": sorted(set(vols)), "units": units_of(sorted(set(vols)))}
        services[pod] = services[unit_file(pod, "pod")] = entry
    for n in stateful:
        entry = {"volumes": sorted(set(named[n])), "units": units_of(sorted(set(named[n])))}
        services.setdefault(n, entry)  # a pod of the same name wins; NAME.container is exact
        services[unit_file(n, "container")] = entry
    for g in groups:
        services.setdefault(g["name"], {"volumes": g["volumes"], "units": g["units"]})
    return {
        "volumes": volumes,
        "groups": groups,
        "services": dict(sorted(services.items())),
        "units": sorted(service_name(n, "container") for n in containers),
    }


# --- validation --------------------------------------------------------------------------------


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    b = active(stack)
    if b is None:
        return
    at: KeyPath = ("backup",)
    p = raw.problem
    if b.tool not in TOOLS:
        yield p((*at, "tool"), f"{b.tool!r}: use one of {', '.join(TOOLS)}")
    if b.method not in METHODS:
        yield p((*at, "method"), f"{b.method!r}: use one of {', '.join(METHODS)}")
    repo = b.repository
    if b.tool == "kopia" and not (repo.startswith("/") or S3_URL.fullmatch(repo)):
        yield p(
            (*at, "repository"),
            f"{repo!r}: kopia repositories here are s3:https://ENDPOINT/BUCKET[/PREFIX] or an absolute path",
        )
    elif not repo.startswith(RESTIC_PREFIXES) or " " in repo:
        yield p(
            (*at, "repository"),
            f"{repo!r}: write s3:https://ENDPOINT/BUCKET[/PREFIX], an absolute path, or another restic repository (sftp:, rest:, b2:, …)",
        )
    elif repo.startswith("s3:") and not S3_URL.fullmatch(repo):
        yield p((*at, "repository"), f"{repo!r}: write s3:https://ENDPOINT/BUCKET[/PREFIX]")
    for key in SECRET_KEYS.values():
        name = getattr(b, key)
        if name is not None and not NAME.fullmatch(name):
            yield p((*at, key), f"invalid secret name {name!r}: {NAME_HINT}")
    keys = (b.s3_access_key_secret, b.s3_secret_key_secret)
    if repo.startswith("s3:") and None in keys:
        yield p(at, "an s3: repository needs s3_access_key_secret and s3_secret_key_secret")
    if not repo.startswith("s3:") and keys != (None, None):
        yield p((*at, "s3_access_key_secret"), "S3 keys go with an s3: repository")
    if b.healthcheck_url is not None and b.healthcheck_url_secret is not None:
        yield p(
            (*at, "healthcheck_url"), "give healthcheck_url or healthcheck_url_secret, not both"
        )
    if b.healthcheck_url is not None:
        url = urllib.parse.urlsplit(b.healthcheck_url)
        if url.scheme not in ("http", "https") or not url.hostname or " " in b.healthcheck_url:
            yield p((*at, "healthcheck_url"), f"{b.healthcheck_url!r} is not an http(s) URL")
    if b.object_lock is not None:
        if b.tool != "kopia" or not repo.startswith("s3:"):
            yield p(
                (*at, "object_lock"),
                "object lock is kopia's, on an s3: repository (restic has no support for it)",
            )
        if not RETENTION.fullmatch(b.object_lock):
            yield p((*at, "object_lock"), f'{b.object_lock!r}: a retention period like "30d"')
    if b.keep is not None:
        for rule in ("last", "daily", "weekly", "monthly", "yearly"):
            if getattr(b.keep, rule) < 0:
                yield p((*at, "keep", rule), "must be 0 or more")
    if b.metrics_file and not b.metrics_file.startswith("/"):
        yield p((*at, "metrics_file"), 'must be an absolute path (or "" for no metric)')
    if not b.snapshot_size.strip():
        yield p((*at, "snapshot_size"), "must not be empty")
    if not plan(stack)["volumes"]:
        yield p(
            at,
            "nothing to back up: no enabled container with stateful = true mounts a named volume",
        )
    for name in stack.enabled_scripts():
        if name == UNIT:
            yield p(
                ("scripts", UNIT),
                "[backup] makes backup.service and backup.timer: remove [scripts.backup] "
                "(or set enabled = false)",
            )
    if UNIT in stack.enabled_containers():
        yield p(("containers", UNIT), "[backup] makes backup.service: rename this container")


# --- rendering ---------------------------------------------------------------------------------


def render(r: Any) -> None:
    """Add the backup's files and units to a render.py _Renderer."""
    stack: Stack = r.stack
    b = active(stack)
    if b is None:
        return
    unit = unit_file(UNIT, "service")
    secrets: dict[str, str] = {}
    files = [SCRIPT_PATH, CONFIG_PATH]
    for key, field in SECRET_KEYS.items():
        name = getattr(b, field)
        if name is None:
            continue
        path = f"{SECRET_DIR}/{key.replace('_', '-')}"
        data = marker(name).encode()
        r.files[path] = _file(data, 0o600)
        secrets[key] = r.host_path(path, UNIT, "service", ("backup", field))
        files.append(path)
    p = plan(stack)
    config = {
        "format": 1,
        "host": stack.host.name,
        "rootless": stack.host.rootless,
        "user": stack.host.ssh_user,
        "state_dir": stack.host.state_dir,
        "tool": b.tool,
        "repository": b.repository,
        "method": b.method,
        "secrets": secrets,
        "healthcheck_url": b.healthcheck_url,
        "s3_region": b.s3_region,
        "keep": {k: v for k, v in _keep(b).items() if v},
        "object_lock": b.object_lock,
        "snapshot_size": b.snapshot_size,
        "metrics_file": metrics_file(stack, b),
        **p,
    }
    r.files[CONFIG_PATH] = _file((json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    r.files[SCRIPT_PATH] = _file(script_source(), 0o755)
    service = [
        ("Type", "oneshot"),
        ("ExecStart", f"/usr/bin/python3 -B {r.current}/{SCRIPT_PATH} run"),
        ("TimeoutStartSec", b.timeout),
        ("Nice", "10"),
    ]
    description = f"Backup of {stack.host.name}'s {len(p['volumes'])} volume(s) with {b.tool}"
    head = [("Description", unitfile.escape(description))]
    if not stack.host.rootless:  # a user's manager has no network-online.target (the system's
        # is checked by the switcher before a rootless switch)
        head += [("Wants", "network-online.target"), ("After", "network-online.target")]
    text = unitfile.render(r.host, [("Unit", head), ("Service", service)])
    r.add_unit(UNIT, "service", text, tuple(files), (), None, False)
    timer = [("OnCalendar", b.on_calendar), ("Persistent", "true")]
    if b.randomized_delay:
        timer.append(("RandomizedDelaySec", b.randomized_delay))
    text = unitfile.render(
        r.host,
        [
            ("Unit", [("Description", f"timer for the backup of {stack.host.name}")]),
            ("Timer", timer),
            ("Install", [("WantedBy", "timers.target")]),
        ],
    )
    r.add_unit(UNIT, "timer", text, (), (unit,), None, True)


def _keep(b: Backup) -> dict[str, int]:
    if b.keep is None:
        return {}
    return {k: getattr(b.keep, k) for k in ("last", "daily", "weekly", "monthly", "yearly")}


def _file(data: bytes, mode: int = 0o644) -> Any:
    return BundleFile(data, mode)


# GEN/scripts/backup.py: runs the backup program (activate/backup/) of its own generation, so
# that `python3 -B STATE/current/scripts/backup.py ...` and backup.service stay as they were.
LAUNCHER = '''\
#!/usr/bin/python3
"""Backups and restores of this host's volumes: the launcher of activate/backup/ (the program
travels with the switcher in this generation); `backup.py --help` says what it does."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this generation's folder

from activate.backup.cli import main

sys.exit(main())
'''


def script_source() -> bytes:
    return LAUNCHER.encode()
