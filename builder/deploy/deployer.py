"""push, activate, switch, rollback, status, remote generations, gc: the deployer's commands.

Each opens one transport to the host (or to `--target`), talks to the switcher through
builder/deploy/remote.py, and returns a typed report that the CLI prints as text or JSON.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import attrs

from activate.manifest_format import Manifest, closure_hash, sha256
from activate.protocol import (
    Action,
    Collected,
    GenerationRow,
    Goal,
    HistoryEntry,
    Planned,
    Result,
    Status,
    Switched,
)
from activate.safety import Safety
from builder.base.errors import BundleError
from builder.bundle.build import BuildResult, build, load_stack, switcher_files
from builder.bundle.paths import Paths
from builder.bundle.store import Generation, Store
from builder.deploy.deadlines import Deadlines
from builder.deploy.push import push, switcher_of
from builder.deploy.remote import RemoteError, Server
from builder.deploy.replies import Misfit, structure
from builder.deploy.results import GcResult, PlanResult, Pushed, StatusResult, SwitchResult
from builder.deploy.secrets_push import deliver, require_set
from builder.deploy.transport import open_transport
from builder.deploy.transport.options import SshOptions


def repaired_of(server: Server) -> str | None:
    """What running the switcher fixed on the server first (None: nothing)."""
    return "; ".join(server.repaired) if server.repaired else None


@contextmanager
def connect(paths: Paths, host: str, target: str | None, accept_new: bool) -> Iterator[Server]:
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
        server = Server(
            host, transport, state, root, reopen, stacks_dir=paths.stacks_dir, deadlines=deadlines
        )
        try:
            yield server
        except BaseException:
            server.drop_session()  # cut short (Ctrl-C, an error): nobody waits for its Python
            raise
        server.end_session()


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
        manifest = gen.load_manifest()
        files = switcher_of(gen, manifest)
        digest = manifest.switcher
    else:
        files = {path: data for path, (data, _mode) in switcher_files().items()}
        digest = closure_hash((path, sha256(data)) for path, data in files.items())
    server.ensure_switcher(digest, files)
    return server.switcher_dir(digest)


def do_push(server: Server, gen: Generation) -> Pushed:
    require_set(gen)
    report = push(server, gen)
    sent = deliver(server, gen, server.stacks_dir)
    return Pushed(report, tuple(sent), server.where)


def switcher_options(safety: Safety, server: Server, manifest: Manifest) -> list[str]:
    """The switcher's options for an activation; a generation whose switcher predates them
    gets none."""
    if safety.goal is not Goal.SWITCH and "activate/bootgen.py" not in manifest.files:
        raise BundleError(
            f"{server.host}: the switcher of generation {manifest.generation} predates --test "
            "and --boot; build a new generation (`bundle switch` builds one) and use it",
            2,
        )
    if "activate/detach.py" not in manifest.files:
        return []
    args = Safety(
        health_timeout=safety.health_timeout, rollback=safety.rollback, goal=safety.goal
    ).argv()
    if safety.goal is Goal.BOOT:
        return args  # nothing running changes: no gate to wait for, no dead-man

    confirm = safety.confirm_timeout
    if confirm is None:
        confirm = manifest.deploy.get("confirm_timeout", 30)
    # files only (ROOT is a folder) or no dead-man wanted: activate in this session
    if server.root == "/" and confirm > 0 and safety.rollback:
        args += ["--detach", "--confirm-timeout", str(confirm)]
    return args


def do_activate(
    server: Server, gen: Generation, force: bool, safety: Safety | None = None
) -> SwitchResult:
    safety = safety or Safety()
    args = ["--generation", str(gen.number), *(["--force"] if force else [])]
    manifest = gen.load_manifest()
    args += switcher_options(safety, server, manifest)
    deadline = server.deadlines.activation(dict(manifest.deploy), safety)
    before = server.bytes_sent
    try:
        report = server.call(
            "activate",
            *args,
            reply=Switched,
            cwd=server.generation_dir(gen.name),
            allow_report_on_failure=True,
            timeout=deadline,
        )
        if report.waiting:
            report = confirm(server, report, gen.name, gen.number, deadline)
    except RemoteError as exc:
        missing = server.generation_dir(gen.name) in str(exc) or "not on this server" in str(exc)
        if missing and exc.report is None:  # a report: the switcher ran (and maybe rolled back)
            raise RemoteError(
                f"{server.host}: generation {gen.number} is not on the server; run `bundle push {server.host} --generation {gen.number}` first"
            ) from exc
        services = {key: unit.service for key, unit in manifest.units.items()}
        named = name_failing_units(str(exc), exc.report, services)
        if named != str(exc):
            raise RemoteError(named, exc.report) from exc
        raise
    return SwitchResult(Action.ACTIVATE, server.host, report, server.bytes_sent - before)


# "web1: rolled back to generation 6: ", "web1: rolled back to no generation: ", "web1: rolled back: "
_ROLLED_BACK = re.compile(r"^(.*?: rolled back(?: to (?:generation [0-9]+|no generation))?: )")


def failing_units(report: Switched | None, services: Mapping[str, str]) -> list[str]:
    """What the switcher's report says failed, one phrase per unit: "web.service failed its
    health check", "crashy.service did not keep running" (the report's last health round;
    `services`: each unit key's service)."""
    phrases: list[str] = []
    checks = report.health.checks if report is not None and report.health is not None else ()
    for check in checks:
        if check.ok or check.unit in (None, "*"):
            continue
        service = services.get(check.unit) or check.unit
        what = "did not keep running" if check.kind == "unit" else "failed its health check"
        if f"{service} {what}" not in phrases:
            phrases.append(f"{service} {what}")
    return phrases


def name_failing_units(
    message: str, report: dict[str, Any] | None, services: Mapping[str, str]
) -> str:
    """A rolled-back deploy's line, with the units that failed right after "rolled back ...:"
    (`report`: the failed switch's report as the switcher printed it)."""
    try:
        typed = structure(report, Switched) if report is not None else None
    except Misfit:
        typed = None  # a report that does not fit names nothing: the line stays as it was
    match = _ROLLED_BACK.match(message)
    phrases = failing_units(typed, services)
    if not match or not phrases or typed is None or typed.result is not Result.ROLLED_BACK:
        return message
    shown = ", ".join(phrases[:3]) + (f" and {len(phrases) - 3} more" if len(phrases) > 3 else "")
    return f"{match.group(1)}{shown}; {message[match.end() :]}"


def confirm(
    server: Server, waiting: Switched, folder: str, number: int, deadline: float
) -> Switched:
    """The dead-man's other half: confirm over a NEW connection that the server is reachable.

    Tries again until the server's window closes (each try bounded by what is left of it);
    when no new connection gets through, the server rolls back by itself, and this says so
    (exit 1, "rolled back" on the first line). `deadline`: how long the confirm command may
    wait for the activation to finish (or to roll back, when it came too late).
    """
    window = float(waiting.confirm_seconds_left or 0)
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
            return fresh.call(
                "confirm",
                "--run",
                str(waiting.run),
                reply=Switched,
                cwd=cwd,
                allow_report_on_failure=True,
                timeout=step_deadline,
            )
        except RemoteError:
            raise  # the server's own answer: confirmed too late and rolled back, or failed
        except BundleError as exc:
            message = (
                f"{server.host}: lost the new connection while confirming generation "
                f"{number} ({exc}); the server keeps it if the confirmation arrived and "
                f"rolls back to generation {waiting.from_} by itself otherwise; "
                f"check with `bundle status {server.host}`"
            )
            unknown = {**waiting.to_json(), "result": Result.UNKNOWN, "error": message}
            raise RemoteError(message, unknown) from exc
        finally:
            server.channels += fresh.channels
            fresh.transport.close()
    left = max(0, round(deadline - time.monotonic()))
    back = waiting.from_
    message = (
        f"{server.host}: rolled back: generation {number} could not be confirmed over a new "
        f"SSH connection ({failure or 'no way to open one'}); the server rolls back to "
        f"{'generation ' + str(back) if back is not None else 'no generation'} by itself "
        f"{f'within {left} s' if left else 'about now'}; check with `bundle status "
        f"{server.host}` once it answers"
    )
    raise RemoteError(
        message,
        {**waiting.to_json(), "result": Result.ROLLED_BACK, "confirmed": False, "error": message},
    )


CONNECT_TIMEOUT = 10.0


def switch_host(
    paths: Paths,
    host: str,
    target: str | None,
    accept_new: bool,
    force: bool,
    safety: Safety | None = None,
) -> SwitchResult:
    """`bundle switch HOST`: the build runs while the connection is opened (a key exchange and
    a remote Python are mostly waiting), so neither waits for the other."""
    # leaving the pool waits for the build, so a failed connection leaves no thread behind
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"build-{host}") as pool:
        building = pool.submit(build, paths, host)
        with connect(paths, host, target, accept_new) as server:
            return do_switch(paths, server, force, safety, building.result())


def do_switch(
    paths: Paths,
    server: Server,
    force: bool,
    safety: Safety | None = None,
    built: BuildResult | None = None,
) -> SwitchResult:
    """Build (unless `built` is given), push and activate one host."""
    built = built if built is not None else build(paths, server.host)
    require_set(built.generation)
    pushed = push(server, built.generation)
    deliver(server, built.generation, paths.stacks_dir)
    activated = do_activate(server, built.generation, force, safety)
    return attrs.evolve(
        activated,
        action=Action.SWITCH,
        built=built.created,
        push=pushed,
        bytes_sent=server.bytes_sent,
        channels=server.channels,
    )


def do_rollback(
    server: Server,
    to: int | None,
    force: bool,
    restore_data: bool = False,
    safety: Safety | None = None,
) -> SwitchResult:
    """Back with the target's own switcher; on a real server detached, with the dead-man."""
    safety = safety or Safety()
    args = [*(["--to", str(to)] if to is not None else []), *(["--force"] if force else [])]
    args += Safety(health_timeout=safety.health_timeout).argv()
    args += ["--restore-data"] * restore_data  # a detached rollback leaves it to us, below
    cwd = posixpath.join(server.state, "current")
    deadline = server.deadlines.activation(None, safety)  # the stack's windows: no manifest here
    before = server.bytes_sent
    report: Switched | None = None
    if server.root == "/" and safety.rollback and safety.confirm_timeout != 0:
        confirm_s = [] if safety.confirm_timeout is None else [str(safety.confirm_timeout)]
        detach = ["--detach", *(["--confirm-timeout", *confirm_s] if confirm_s else [])]
        try:
            report = server.call(
                "rollback",
                *args,
                *detach,
                reply=Switched,
                cwd=cwd,
                allow_report_on_failure=True,
                timeout=deadline,
            )
        except RemoteError as exc:
            if "unrecognized arguments" not in str(exc):
                raise
            report = None  # the server's switcher predates the dead-man for rollbacks
    if report is None:
        report = server.call(
            "rollback",
            *args,
            reply=Switched,
            cwd=cwd,
            allow_report_on_failure=True,
            timeout=deadline,
        )
    elif report.waiting:
        notes, later = report.snapshots, report.data_warnings
        report = confirm(server, report, str(report.folder), int(report.to or 0), deadline)
        if notes:
            report = report.evolve(snapshots=notes)
            if restore_data:
                back = server.call(
                    "rollback",
                    "--to",
                    str(report.to),
                    "--restore-data",
                    reply=Switched,
                    cwd=cwd,
                    timeout=deadline,
                )
                report = report.evolve(restored=back.restored)
            else:
                report = report.evolve(warnings=(*report.warnings, *later))
    report = report.evolve(
        warnings=tuple(
            w.replace("bundle rollback HOST", f"bundle rollback {server.host}")
            for w in report.warnings
        )
    )
    return SwitchResult(Action.ROLLBACK, server.host, report, server.bytes_sent - before)


def do_status(server: Server, gen: Generation | None) -> StatusResult:
    before = server.bytes_sent
    report = server.call("status", reply=Status, cwd=_switcher_cwd(server, gen))
    where, repaired = server.where, repaired_of(server)
    return StatusResult(server.host, report, server.bytes_sent - before, where, repaired)


def do_remote_generations(server: Server, store: Store) -> list[GenerationRow]:
    """The server's generations, each with its build time: the manifest holds none (so that
    builds are reproducible), the build log beside the local generations does; None when the
    generation was built elsewhere or its log line is gone."""
    rows = server.call_rows(
        "generations", row=GenerationRow, cwd=_switcher_cwd(server, store.latest())
    )
    built = store.build_times()
    return [
        row.evolve(
            built_at=row.built_at
            or built.get(row.folder or f"{row.generation}-{(row.hash or '')[:12]}")
            or None
        )
        for row in rows
    ]


def do_gc(paths: Paths, server: Server, keep: int) -> GcResult:
    store = Store(paths.bundles_dir, server.host)
    latest = store.latest()
    cwd = _switcher_cwd(server, latest)
    remote = server.call("gc", "--keep", str(keep), reply=Collected, cwd=cwd)
    listing = server.call_rows("generations", row=GenerationRow, cwd=cwd)
    # the server's active and rollback generations stay here too, so a rollback can be diffed
    protected = {g.generation for g in listing if g.active or g.previous or g.rollback_target}
    local = store.generations()
    removed_local = []
    for gen in local[:-keep] if keep > 0 else local:
        if gen.number not in protected and gen is not latest:
            store.remove(gen)
            removed_local.append(gen.number)
    return GcResult(server.host, remote, tuple(removed_local), repaired_of(server))


def do_plan(paths: Paths, server: Server, number: int | None) -> PlanResult:
    """What activating a generation would do; it is pushed first, nothing else changes."""
    gen = (
        local_generation(paths, server.host, number)
        if number is not None
        else build(paths, server.host).generation
    )
    pushed = push(server, gen)
    report = server.call(
        "plan", "--generation", str(gen.number), reply=Planned, cwd=server.generation_dir(gen.name)
    )
    return PlanResult(server.host, report, pushed)


def do_log(server: Server, gen: Generation | None, limit: int) -> list[HistoryEntry]:
    return server.call_rows(
        "history", "--limit", str(limit), row=HistoryEntry, cwd=_switcher_cwd(server, gen)
    )
