"""`bundle preview HOST [--generation N] [--keep]`: a generation on a throwaway local server.

The server is the one `bundle demo` and the tests boot (builder/testserver: systemd-nspawn,
systemd as PID 1, sshd, podman). The generation is pushed and activated there by the same
code as a deploy, so its images are pulled and its health gate runs; then this says where to
look and what differs from the real host, and removes the server unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from activate.safety import Safety
from builder.base.errors import BundleError, InputError
from builder.base.words import plural
from builder.bundle.paths import Paths
from builder.bundle.store import Generation
from builder.commands.common import paths_from
from builder.deploy.deployer import connect, do_activate, local_generation
from builder.deploy.push import push
from builder.deploy.remote import RemoteError
from builder.deploy.secrets_push import deliver, needed
from builder.deploy.transport.options import CONFIG_ENV
from builder.images.registry import split_image
from builder.stack.load import load_stack
from builder.testserver import Registry, Target, host_problems, keep_noted, stop_noted
from builder.testserver.egress import Egress, server_config
from builder.testserver.registry import REGISTRY_NAME

Say = Callable[[str], None]
RECORD = "preview.json"  # bundles/HOST/preview.json: a kept preview, for --stop
CONTAINERS_CONF = "/etc/containers/containers.conf.d/90-bundle-preview.conf"


def run_preview(
    paths: Paths,
    host: str,
    number: int | None,
    keep: bool,
    say: Say = print,
    registry: Registry | None = None,
    server_files: Mapping[str, str] | None = None,
) -> bool:
    """Boot, push, activate, report; True when the generation passed its health gate.
    `registry`: a local registry the server reaches as registry.test:5000 (the tests');
    `server_files`: files written on the server before the push (path -> text)."""
    problems = [p for p in host_problems() if "root" not in p and not p.startswith("run ")]
    if os.geteuid() != 0:
        problems.insert(0, "this is not root (run it with sudo)")
    if problems:
        raise InputError(
            f"bundle preview needs root and systemd-nspawn for its throwaway server: "
            f"{'; '.join(problems)} (see docs/operations.md, A local preview)"
        )
    gen = local_generation(paths, host, number)
    if load_stack(paths.stacks_dir, host).data.get("host", {}).get("rootless"):
        raise InputError(
            f"{host}: a rootless host (docs/rootless.md); bundle preview boots hosts whose "
            "switcher runs as root only"
        )
    record = paths.bundles_dir / host / RECORD
    if record.exists():
        raise InputError(
            f"{host}: a preview is already running; stop it first (bundle preview --stop {host})"
        )
    say(f"{host}: booting a throwaway server for generation {gen.number} ...")
    target = Target(registry=registry).up()
    kept = False
    egress: Egress | None = None
    try:
        say(f"  server up at {target.host} in {target.boot_seconds:.1f} s")
        ports = registry_ports(gen.load_manifest().all_images())
        egress = Egress.start(
            target.gateway, target.host, f"ve-{target.name}", ports, target.state_dir / "egress.log"
        )
        direct = [REGISTRY_NAME] if registry is not None else []
        files = {CONTAINERS_CONF: server_config(egress.url, direct), **(server_files or {})}
        for path, text in files.items():
            target.write_file(path, text)
        healthy, notes = _deploy(paths, host, gen, target, say)
        notes["images"] = (
            f"pulled by the preview server through this machine ({egress.url}, an HTTPS proxy "
            f"for port{'s' if len(ports) > 1 else ''} {', '.join(map(str, sorted(ports)))} only)"
        )
        stack = load_stack(paths.stacks_dir, host).data
        for line in _look_at(stack, target.host):
            say(line)
        say("what differs from the real host:")
        for line in _differences(stack, host, target.host, notes):
            say(f"  {line}")
        if keep:
            keep_noted(target, record)
            kept = True
            say(f"kept: ssh -i {target.key_path} root@{target.host}")
            say(f"stop it with: bundle preview --stop {host}")
        return healthy
    finally:
        if not kept:
            say("removing the preview server ...")
            if egress is not None:
                egress.stop()
            target.down()


def registry_ports(refs: Iterable[str]) -> set[int]:
    """The ports pulls of `refs` connect to: 443, and any port a registry name carries."""
    ports = {443}
    for ref in refs:
        _, colon, port = split_image(ref)[0].rpartition(":")
        if colon and port.isdigit():
            ports.add(int(port))
    return ports


def _deploy(
    paths: Paths, host: str, gen: Generation, target: Target, say: Say
) -> tuple[bool, dict[str, str]]:
    """Push and activate on the preview server; whether it is healthy, and notes on secrets."""
    work = Path(tempfile.mkdtemp(prefix="bundle-preview-"))
    config = work / "ssh_config"
    config.write_text(
        f"Host {target.host}\n  User root\n  IdentityFile {target.key_path}\n"
        f"  UserKnownHostsFile {target.known_hosts_path}\n  IdentitiesOnly yes\n"
    )
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(config)  # the preview's key and host key, not the user's
    try:
        return _activate(paths, host, gen, f"ssh://root@{target.host}:22", say)
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before


def _activate(
    paths: Paths, host: str, gen: Generation, url: str, say: Say
) -> tuple[bool, dict[str, str]]:
    notes: dict[str, str] = {}
    with connect(paths, host, url, False) as server:
        # the preview must not tell the host's [notify] targets: the switcher stays quiet
        paused = posixpath.join(server.state, "notify-paused")
        server.transport.run(["mkdir", "-p", server.state], timeout=30)
        server.transport.run(["touch", paused], timeout=30)
        push(server, gen)
        manifest = gen.load_manifest()
        if needed(manifest):
            try:
                sent = deliver(server, gen, paths.stacks_dir)
                notes["secrets"] = f"delivered ({', '.join(sent) or 'none new'})"
            except BundleError as exc:
                notes["secrets"] = f"not delivered ({exc}); units that read them do not start"
        try:
            result = do_activate(server, gen, True, Safety())
        except RemoteError as exc:
            say(f"  activation failed: {exc}")
            return False, notes
    report = result.reply
    pulled = report.pulled or ()
    say(f"  generation {gen.number} active; {plural(len(pulled), 'image')} pulled")
    health = report.health
    if health is not None and not health.skipped:
        checks = [c for c in health.checks if c.kind != "unit"]
        passed = f"{plural(len(checks), 'check')} passed in {health.seconds:.1f} s"
        say(f"  health: every unit up and {passed}")
    return True, notes


def _ports(stack: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(container, bind address, host port) of every published port."""
    found = []
    for name, spec in sorted((stack.get("containers") or {}).items()):
        for port in spec.get("ports", []) if isinstance(spec, dict) else []:
            parts = str(port).split("/")[0].split(":")
            if len(parts) >= 2:
                found.append((name, parts[0] if len(parts) == 3 else "0.0.0.0", parts[-2]))
    return found


def _look_at(stack: dict[str, Any], address: str) -> list[str]:
    lines = []
    for name, bind, port in _ports(stack):
        if bind.startswith("127.") or bind == "::1":
            lines.append(f"  {name}: bound to {bind} on the server: ssh -L {port}:{bind}:{port}")
        else:
            lines.append(f"  {name}: http://{address}:{port}/")
    return ["look at:", *lines] if lines else ["look at: nothing is published (no ports)"]


def _differences(
    stack: dict[str, Any], host: str, address: str, notes: dict[str, str]
) -> list[str]:
    real = (stack.get("host") or {}).get("address", host)
    lines = [
        f"address: {address}, reachable from this machine only (the host is {real})",
        f"secrets: {notes.get('secrets', 'none in this generation')}",
        "DNS: names that point at the host do not point here; use the address above",
        "public ports: published on the preview's address, not on the internet",
        f"images: {notes.get('images', 'none')}",
    ]
    if stack.get("notify"):
        lines.append("notifications: paused on the preview; [notify] targets are not told")
    if stack.get("wireguard"):
        lines.append("WireGuard: the interface is set up, its peers are not reachable from here")
    return lines


def stop_preview(paths: Paths, host: str, say: Say = print) -> None:
    address = stop_noted(paths.bundles_dir / host / RECORD)
    if address is None:
        raise InputError(f"{host}: no kept preview to stop (bundle preview {host} --keep)")
    say(f"{host}: stopped the preview server at {address}")


def cmd_preview(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    if args.stop:
        stop_preview(paths, args.host)
        return 0
    ok = run_preview(paths, args.host, args.generation, args.keep, lambda s: print(s, flush=True))
    return 0 if ok else 1
