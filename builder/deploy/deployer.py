"""push, activate, switch, rollback, status, remote generations, gc: the deployer's commands.

Each opens one transport to the host (or to `--target`), talks to the switcher through
builder/deploy/remote.py, and returns a report (dict) that the CLI prints as text or JSON.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from builder.base.errors import BundleError
from builder.bundle.build import build, load_stack
from builder.bundle.paths import Paths
from builder.bundle.store import Generation, Store
from builder.deploy.deadlines import Deadlines
from builder.deploy.push import push, switcher_of
from builder.deploy.remote import RemoteError, Server


@contextmanager
def connect(paths: Paths, host: str, target: str | None, accept_new: bool) -> Iterator[Server]:
    from builder.deploy.transport import open_transport
    from builder.deploy.transport.options import SshOptions

    spec = load_stack(paths, host).host
    deadlines = Deadlines.of(spec)
    transport, root = open_transport(target, spec.address, spec.ssh_user, spec.ssh_port, accept_new)
    state = spec.state_dir if root == "/" else posixpath.join(root, spec.state_dir.lstrip("/"))

    def reopen(seconds: float) -> Server:  # a second, independent connection (the dead-man)
        options = SshOptions(connect_timeout=seconds)
        fresh, _ = open_transport(
            target, spec.address, spec.ssh_user, spec.ssh_port, accept_new, ssh_options=options
        )
        return Server(host, fresh, state, root, deadlines=deadlines)

    with transport:
        yield Server(
            host, transport, state, root, reopen, stacks_dir=paths.stacks_dir, deadlines=deadlines
        )


def local_generation(paths: Paths, host: str, number: int | None) -> Generation:
    store = Store(paths.bundles_dir, host)
    latest = store.latest()
    if latest is None:
        raise BundleError(f"{host}: no generation built yet; run `bundle build {host}`")
    if number is None:
        return latest
    try:
        return store.get(number)
    except BundleError as exc:
        raise BundleError(str(exc)) from exc  # for a deploy this is a failed operation: exit 1


def _switcher_cwd(server: Server, gen: Generation | None) -> str:
    """A folder on the server holding a switcher that can answer read-only questions:
    the latest built generation's, or (nothing built here) the one this tool carries."""
    if gen is not None:
        manifest = gen.manifest()
        files = switcher_of(gen, manifest)
        digest = manifest["switcher"]
    else:
        from builder.bundle.build import switcher_files
        from builder.bundle.manifest import closure_hash, sha256

        files = {path: data for path, (data, _mode) in switcher_files().items()}
        digest = closure_hash(sorted(files), {p: {"sha256": sha256(d)} for p, d in files.items()})
    server.ensure_switcher(digest, files)
    return server.switcher_dir(digest)


def do_push(server: Server, gen: Generation) -> dict[str, Any]:
    from builder.deploy.secrets_push import deliver, require_set

    require_set(gen)
    report = {"action": "push", **push(server, gen).to_json()}
    return {**report, "secrets_sent": deliver(server, gen, server.stacks_dir)}


@attrs.frozen
class Safety:
    """How a deploy proves it worked: docs/reliability.md."""

    no_rollback: bool = False
    health_timeout: int | None = None  # None: the generation's ([host] health_timeout)
    confirm_timeout: int | None = None  # None: the generation's ([host] confirm_timeout)

    def options(self, server: Server, manifest: dict[str, Any]) -> list[str]:
        """The switcher's options; a generation whose switcher predates them gets none."""
        if "activate/detach.py" not in manifest.get("files", {}):
            return []
        args = ["--no-rollback"] * self.no_rollback
        if self.health_timeout is not None:
            args += ["--health-timeout", str(self.health_timeout)]
        confirm = self.confirm_timeout
        if confirm is None:
            confirm = manifest.get("deploy", {}).get("confirm_timeout", 30)
        # files only (ROOT is a folder) or no dead-man wanted: activate in this session
        if server.root == "/" and confirm > 0 and not self.no_rollback:
            args += ["--detach", "--confirm-timeout", str(confirm)]
        return args


def do_activate(
    server: Server, gen: Generation, force: bool, safety: Safety | None = None
) -> dict[str, Any]:
    safety = safety or Safety()
    args = ["--generation", str(gen.number), *(["--force"] if force else [])]
    args += safety.options(server, gen.manifest())
    deadline = server.deadlines.activation(gen.manifest().get("deploy"), safety)
    before = server.bytes_sent
    try:
        report = server.call(
            "activate",
            *args,
            cwd=server.generation_dir(gen.name),
            allow_report_on_failure=True,
            timeout=deadline,
        )
        if report.get("phase") == "confirm":
            report = confirm(server, report, gen.name, gen.number, deadline)
    except RemoteError as exc:
        missing = server.generation_dir(gen.name) in str(exc) or "not on this server" in str(exc)
        if missing and exc.report is None:  # a report: the switcher ran (and maybe rolled back)
            raise RemoteError(
                f"{server.host}: generation {gen.number} is not on the server; run `bundle push {server.host} --generation {gen.number}` first"
            ) from exc
        named = name_failing_units(str(exc), exc.report, gen.manifest())
        if named != str(exc):
            raise RemoteError(named, exc.report) from exc
        raise
    return {
        "action": "activate",
        "host": server.host,
        **report,
        "bytes_sent": server.bytes_sent - before,
    }


# "web1: rolled back to generation 6: ", "web1: rolled back to no generation: ", "web1: rolled back: "
_ROLLED_BACK = re.compile(r"^(.*?: rolled back(?: to (?:generation [0-9]+|no generation))?: )")


def failing_units(report: dict[str, Any] | None, manifest: dict[str, Any]) -> list[str]:
    """What the switcher's report says failed, one phrase per unit: "web.service failed its
    health check", "crashy.service did not keep running" (the report's last health round)."""
    units = manifest.get("units", {})
    phrases: list[str] = []
    checks = ((report or {}).get("health") or {}).get("checks") or []
    for check in checks:
        if check.get("ok", True) or check.get("unit") in (None, "*"):
            continue
        service = units.get(check["unit"], {}).get("service") or check["unit"]
        what = "did not keep running" if check.get("kind") == "unit" else "failed its health check"
        if f"{service} {what}" not in phrases:
            phrases.append(f"{service} {what}")
    return phrases


def name_failing_units(
    message: str, report: dict[str, Any] | None, manifest: dict[str, Any]
) -> str:
    """A rolled-back deploy's line, with the units that failed right after "rolled back ...:"."""
    match = _ROLLED_BACK.match(message)
    phrases = failing_units(report, manifest)
    if not match or not phrases or (report or {}).get("result") != "rolled back":
        return message
    shown = ", ".join(phrases[:3]) + (f" and {len(phrases) - 3} more" if len(phrases) > 3 else "")
    return f"{match.group(1)}{shown}; {message[match.end() :]}"


def confirm(
    server: Server, waiting: dict[str, Any], folder: str, number: int, deadline: float
) -> dict[str, Any]:
    """The dead-man's other half: confirm over a NEW connection that the server is reachable.

    Tries again until the server's window closes (each try bounded by what is left of it);
    when no new connection gets through, the server rolls back by itself, and this says so
    (exit 1, "rolled back" on the first line). `deadline`: how long the confirm command may
    wait for the activation to finish (or to roll back, when it came too late).
    """
    window = float(waiting.get("confirm_seconds_left") or 0)
    step_deadline = deadline
    deadline = time.monotonic() + window
    cwd = server.generation_dir(folder)
    failure: BundleError | None = None
    while server.reopen is not None and (left := deadline - time.monotonic()) > 0.5:
        try:
            fresh = server.reopen(min(CONNECT_TIMEOUT, float(max(1, int(left)))))
        except BundleError as exc:
            failure = exc
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            continue
        try:
            report: dict[str, Any] = fresh.call(
                "confirm",
                "--run",
                str(waiting["run"]),
                cwd=cwd,
                allow_report_on_failure=True,
                timeout=step_deadline,
            )
            return report
        except RemoteError:
            raise  # the server's own answer: confirmed too late and rolled back, or failed
        except BundleError as exc:
            message = (
                f"{server.host}: lost the new connection while confirming generation "
                f"{number} ({exc}); the server keeps it if the confirmation arrived and "
                f"rolls back to generation {waiting.get('from')} by itself otherwise; "
                f"check with `bundle status {server.host}`"
            )
            raise RemoteError(message, {**waiting, "result": "unknown", "error": message}) from exc
        finally:
            fresh.transport.close()
    left = max(0, round(deadline - time.monotonic()))
    back = waiting.get("from")
    message = (
        f"{server.host}: rolled back: generation {number} could not be confirmed over a new "
        f"SSH connection ({failure or 'no way to open one'}); the server rolls back to "
        f"{'generation ' + str(back) if back is not None else 'no generation'} by itself "
        f"{f'within {left} s' if left else 'about now'}; check with `bundle status "
        f"{server.host}` once it answers"
    )
    raise RemoteError(
        message, {**waiting, "result": "rolled back", "confirmed": False, "error": message}
    )


CONNECT_TIMEOUT = 10.0


def do_switch(
    paths: Paths, server: Server, force: bool, safety: Safety | None = None
) -> dict[str, Any]:
    from builder.deploy.secrets_push import deliver, require_set

    built = build(paths, server.host)
    require_set(built.generation)
    pushed = push(server, built.generation)
    deliver(server, built.generation, paths.stacks_dir)
    activated = do_activate(server, built.generation, force, safety)
    return {
        **activated,
        "action": "switch",
        "built": built.created,
        "push": pushed.to_json(),
        "bytes_sent": server.bytes_sent,
    }


def do_rollback(
    server: Server,
    to: int | None,
    force: bool,
    restore_data: bool = False,
    safety: Safety | None = None,
) -> dict[str, Any]:
    """Back with the target's own switcher; on a real server detached, with the dead-man."""
    safety = safety or Safety()
    args = [*(["--to", str(to)] if to is not None else []), *(["--force"] if force else [])]
    if safety.health_timeout is not None:
        args += ["--health-timeout", str(safety.health_timeout)]
    args += ["--restore-data"] * restore_data  # a detached rollback leaves it to us, below
    cwd = posixpath.join(server.state, "current")
    deadline = server.deadlines.activation(None, safety)  # the stack's windows: no manifest here
    before = server.bytes_sent
    report: dict[str, Any] | None = None
    if server.root == "/" and not safety.no_rollback and safety.confirm_timeout != 0:
        confirm_s = [] if safety.confirm_timeout is None else [str(safety.confirm_timeout)]
        detach = ["--detach", *(["--confirm-timeout", *confirm_s] if confirm_s else [])]
        try:
            report = server.call(
                "rollback", *args, *detach, cwd=cwd, allow_report_on_failure=True, timeout=deadline
            )
        except RemoteError as exc:
            if "unrecognized arguments" not in str(exc):
                raise
            report = None  # the server's switcher predates the dead-man for rollbacks
    if report is None:
        report = server.call(
            "rollback", *args, cwd=cwd, allow_report_on_failure=True, timeout=deadline
        )
    elif report.get("phase") == "confirm":
        notes, later = report.get("snapshots") or [], report.get("data_warnings") or []
        report = confirm(server, report, str(report["folder"]), int(report["to"]), deadline)
        if notes:
            report["snapshots"] = notes
            if restore_data:
                back = server.call(
                    "rollback",
                    "--to",
                    str(report["to"]),
                    "--restore-data",
                    cwd=cwd,
                    timeout=deadline,
                )
                report["restored"] = back.get("restored", [])
            else:
                report["warnings"] = [*report.get("warnings", []), *later]
    report["warnings"] = [
        w.replace("bundle rollback HOST", f"bundle rollback {server.host}")
        for w in report.get("warnings", [])
    ]
    return {
        "action": "rollback",
        "host": server.host,
        **report,
        "bytes_sent": server.bytes_sent - before,
    }


def do_status(server: Server, gen: Generation | None) -> dict[str, Any]:
    before = server.bytes_sent
    report = server.call("status", cwd=_switcher_cwd(server, gen))
    return {"host": server.host, **report, "bytes_sent": server.bytes_sent - before}


def do_remote_generations(server: Server, store: Store) -> list[dict[str, Any]]:
    """The server's generations, each with its build time: the manifest holds none (so that
    builds are reproducible), the build log beside the local generations does; None when the
    generation was built elsewhere or its log line is gone."""
    rows: list[dict[str, Any]] = server.call(
        "generations", cwd=_switcher_cwd(server, store.latest())
    )
    built = store.build_times()
    for row in rows:
        folder = row.get("folder") or f"{row['generation']}-{(row.get('hash') or '')[:12]}"
        row["built_at"] = row.get("built_at") or built.get(folder) or None
    return rows


def do_gc(paths: Paths, server: Server, keep: int) -> dict[str, Any]:
    store = Store(paths.bundles_dir, server.host)
    latest = store.latest()
    cwd = _switcher_cwd(server, latest)
    remote = server.call("gc", "--keep", str(keep), cwd=cwd)
    listing = server.call("generations", cwd=cwd)
    # the server's active and rollback generations stay here too, so a rollback can be diffed
    protected = {
        g["generation"]
        for g in listing
        if g.get("active") or g.get("previous") or g.get("rollback_target")
    }
    local = store.generations()
    removed_local = []
    for gen in local[:-keep] if keep > 0 else local:
        if gen.number not in protected and gen is not latest:
            store.remove(gen)
            removed_local.append(gen.number)
    return {"host": server.host, "server": remote, "local_removed": removed_local}


def do_plan(paths: Paths, server: Server, number: int | None) -> dict[str, Any]:
    """What activating a generation would do; it is pushed first, nothing else changes."""
    gen = (
        local_generation(paths, server.host, number)
        if number is not None
        else build(paths, server.host).generation
    )
    pushed = push(server, gen)
    report = server.call(
        "plan", "--generation", str(gen.number), cwd=server.generation_dir(gen.name)
    )
    return {"action": "plan", "host": server.host, **report, "push": pushed.to_json()}


def do_log(server: Server, gen: Generation | None, limit: int) -> list[dict[str, Any]]:
    return server.call("history", "--limit", str(limit), cwd=_switcher_cwd(server, gen))
