"""`backup --now`, `restore` and the snapshot list, run on the server through its backup script."""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import time
from typing import Any

from activate import strict_json
from activate.protocol import SnapshotList
from builder.base.errors import BundleError
from builder.bundle.build import load_stack
from builder.deploy.replies import Misfit, structure
from builder.deploy.unit_follow import Run, RunReport, follow
from builder.deploy.unit_follow import remote as _remote
from builder.render.features.backup import SCRIPT_PATH, UNIT, active, plan
from builder.stack.names import unit_file


def read_config(paths: Any, host: str) -> dict[str, Any]:
    """The host's backup settings, from its stack (which must have [backup])."""
    stack = load_stack(paths, host)
    b = active(stack)
    if b is None:
        raise BundleError(
            f"{host}: the stack has no [backup] table (or it is disabled); see docs/stack-reference.md#backup",
            2,
        )
    return {"stack": stack, "backup": b, **plan(stack)}


def _script(server: Any) -> str:
    return posixpath.join(server.state, "current", SCRIPT_PATH)


def _require_script(server: Any) -> None:
    _, out, _ = _remote(
        server, f"test -f {shlex.quote(_script(server))} && echo yes", "backup-script"
    )
    if out.strip() != "yes":
        raise BundleError(
            f"{server.host}: the active generation has no backup script; deploy a stack with "
            f"[backup] first (bundle switch {server.host})",
            1,
        )


def _ready(server: Any, what: str) -> None:
    if server.root != "/":
        raise BundleError(
            f"{server.host}: {what} needs a real server, not a folder (--target DIR)", 2
        )
    _require_script(server)


def _user(rootless: bool) -> str:
    """`--user` for a rootless host's commands: its units are in the user's manager."""
    return " --user" if rootless else ""


# what a rootless host's commands need over a non-interactive SSH session
USER_ENV = 'export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}"; '


def do_backup_now(server: Any, rootless: bool = False) -> RunReport:
    """Start backup.service, follow it, and report with the run's journal lines."""
    _ready(server, "backup")
    unit = unit_file(UNIT, "service")
    user, env = _user(rootless), USER_ENV if rootless else ""
    run = Run(
        "backup",
        unit,
        env,
        user,
        f"id=$(systemctl{user} show -p InvocationID --value {unit}); "
        'journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="$id"',
    )
    return follow(
        server,
        run,
        f"systemctl{user} start --no-block {unit}",
        f" (journalctl{user} -u {unit} on the server)",
    )


def do_restore(
    server: Any,
    service: str | None,
    snapshot: str | None,
    from_host: str | None,
    repository: str | None,
    rootless: bool = False,
) -> RunReport:
    """The script's restore in a transient unit: a dropped connection does not cut it."""
    _ready(server, "restore")
    args = ["restore", *([service] if service else ["--all"])]
    args += ["--snapshot", snapshot] if snapshot else []
    args += ["--from-host", from_host] if from_host else []
    args += ["--repository", repository] if repository else []
    name = f"bundle-restore-{time.strftime('%Y%m%dT%H%M%S')}"
    # no --collect: a failed restore's unit stays to be read (a finished one goes by itself)
    command = shlex.join(
        [
            "systemd-run", *(["--user"] if rootless else []), "--quiet", "--no-block", f"--unit={name}",
            f"--description=bundle restore {service or '--all'}",
            "-p", "Type=oneshot", "-p", "TimeoutStartSec=infinity",
            "/usr/bin/python3", "-B", _script(server), *args,
        ]
    )  # fmt: skip
    user = _user(rootless)
    run = Run(
        "restore",
        f"{name}.service",
        USER_ENV if rootless else "",
        user,
        f"journalctl --no-pager -o cat{user} -u {name}.service | grep -v '^{name}'",
    )
    try:
        return follow(server, run, command, service=service or "--all")
    finally:  # a failed restore's unit is read; now it may go
        with contextlib.suppress(BundleError):
            _remote(
                server,
                f"{run.env}systemctl{user} reset-failed {name}.service 2>/dev/null; true",
                "restore-follow",
            )


def do_list(
    server: Any, service: str | None, from_host: str | None, repository: str | None
) -> SnapshotList:
    _ready(server, "listing snapshots")
    args = ["list", *([service] if service else [])]
    args += ["--from-host", from_host] if from_host else []
    args += ["--repository", repository] if repository else []
    rc, out, _ = _remote(
        server, shlex.join(["/usr/bin/python3", "-B", _script(server), *args]), "snapshots"
    )
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if rc != 0 or not lines:
        reason = lines[-1].removeprefix("error: ") if lines else f"exit code {rc}"
        raise BundleError(f"{server.host}: listing the snapshots failed: {reason}", 1)
    try:
        listing = strict_json.loads(lines[-1], "the snapshot list", "")
        return structure({"action": "list", "host": server.host, **listing}, SnapshotList)
    except strict_json.JsonRefused as exc:
        raise BundleError(
            f"{server.host}: listing the snapshots failed: {exc.message}", 1
        ) from None
    except Misfit as exc:
        raise BundleError(
            f"{server.host}: listing the snapshots failed: the snapshot list {exc}", 1
        ) from None
