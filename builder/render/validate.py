"""Checks across the whole stack that types alone cannot express. Pure: stack in, problems out."""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from builder.base.errors import Problem
from builder.render.features import backup, hooks, monitoring, notify, reload, wireguard
from builder.stack import depends, lines, stackfiles, timespec, unitfile
from builder.stack.load import KeyPath, RawStack
from builder.stack.model import Check, ConfigFile, Container, Stack
from builder.stack.names import NAME, NAME_HINT, TAG, service_name
from builder.stack.ports import PortTable, parse_port

# used with fullmatch only: `$` lets a trailing newline through, `\d` non-ASCII digits
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MODE = re.compile(r"0?[0-7]{3}")
SPECIAL_NETWORKS = ("host", "none")
# a pinned version has a number in it (1.27.3, 16-alpine, v2); "alpine" or "stable" moves
PINNED = re.compile(r"[0-9]")


def validate(stack: Stack, raw: RawStack, templates_dir: Path) -> list[Problem]:
    return list(_problems(stack, raw, templates_dir))


def _rootless(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    if not stack.host.rootless:
        return
    if stack.host.ssh_user == "root":
        yield raw.problem(
            ("host", "rootless"),
            'needs ssh_user to be the user the units run as, not root (e.g. ssh_user = "apps")',
        )
    if stack.tunnel() is not None:
        yield raw.problem(
            ("wireguard",),
            "a rootless host cannot bring up a WireGuard interface (that needs root); "
            "keep the tunnel in a rootful stack for the same machine",
        )
    if stack.host.state_dir == "/var/lib/bundle":
        yield raw.problem(
            ("host", "state_dir"),
            f"/var/lib/bundle is root's; a rootless host keeps its state where "
            f"{stack.host.ssh_user} can write: leave state_dir out (default "
            f"/home/{stack.host.ssh_user}/.local/state/bundle) or name a folder it owns",
        )
    b = backup.active(stack)
    if b is not None and b.method == "snapshot":
        yield raw.problem(
            ("backup", "method"),
            'LVM and btrfs snapshots need root: use method = "stop" on a rootless host',
        )


def _problems(stack: Stack, raw: RawStack, templates_dir: Path) -> Iterator[Problem]:
    p = raw.problem
    expected = raw.files[-1].stem if raw.files else stack.host.name
    if stack.host.name != expected:
        yield p(
            ("host", "name"),
            f"is {stack.host.name!r} but the file is {expected}.toml: make them the same",
        )
    if not 1 <= stack.host.ssh_port <= 65535:
        yield p(("host", "ssh_port"), "must be between 1 and 65535")
    if not posixpath.isabs(stack.host.state_dir) or ".." in stack.host.state_dir.split("/"):
        yield p(("host", "state_dir"), "must be an absolute path without '..'")
    yield from _host_timeouts(stack, raw)
    yield from _rootless(stack, raw)

    for table in ("containers", "pods", "volumes", "networks", "scripts"):
        for name in getattr(stack, table):
            if not NAME.fullmatch(name):
                yield p((table, name), f"invalid unit name {name!r}: {NAME_HINT}")

    yield from _duplicate_units(stack, raw)
    yield from backup.problems(stack, raw)
    yield from notify.problems(stack, raw)
    yield from hooks.problems(stack, raw)
    yield from reload.problems(stack, raw)
    published: PortTable[KeyPath] = PortTable()
    templates = TemplateChecks(templates_dir)
    for name, pod in stack.enabled_pods().items():
        yield from _ports(pod.ports, ("pods", name), raw, published)
        yield from _networks(pod.networks, ("pods", name), stack, raw)
    for name, c in stack.enabled_containers().items():
        yield from _container(name, c, stack, raw, templates, published)
    for name, script in stack.enabled_scripts().items():
        at: KeyPath = ("scripts", name)
        given = [k for k in ("template", "source", "run") if getattr(script, k) is not None]
        if len(given) != 1:
            yield p(at, "give exactly one of template, source or run")
        for key in ("template", "source"):
            ref = getattr(script, key)
            if ref is not None:
                yield from _template_file(ref, (*at, key), raw, templates)
        yield from _env_names(script.environment, (*at, "environment"), raw)
        if script.on_activation and script.on_calendar is not None:
            yield p((*at, "on_activation"), "a script runs on_calendar or on_activation, not both")
        if script.stop is not None and not script.on_activation:
            yield p((*at, "stop"), "stop undoes an on_activation script: set on_activation = true")
    yield from wireguard.problems(stack, raw)
    yield from monitoring.problems(stack, raw)
    yield from _times(stack, raw)
    yield from lines.problems(stack, raw)
    yield from _depends_cycles(stack, raw)


def _times(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    """Every time value, checked with the grammar of the program that will read it."""
    spans: list[tuple[KeyPath, str | None]] = []
    calendars: list[tuple[KeyPath, str | None]] = []
    for name, script in stack.enabled_scripts().items():
        at: KeyPath = ("scripts", name)
        calendars.append(((*at, "on_calendar"), script.on_calendar))
        spans += [((*at, "timeout"), script.timeout)]
        spans += [((*at, "randomized_delay"), script.randomized_delay)]
    b = backup.active(stack)
    if b is not None:
        calendars.append((("backup", "on_calendar"), b.on_calendar))
        spans += [(("backup", "timeout"), b.timeout)]
        spans += [(("backup", "randomized_delay"), b.randomized_delay)]
    for at, value in calendars:
        why = None if value is None else timespec.calendar_problem(value)
        if why is not None:
            yield raw.problem(at, why)
    for at, value in spans:
        why = None if value is None else timespec.timespan_problem(value)
        if why is not None:
            yield raw.problem(at, why)
    for name, c in stack.enabled_containers().items():
        if c.health is None:
            continue
        at = ("containers", name, "health")
        # what podman 5.4 takes: tests/server/test_health_timings.py proves it on the server
        for key, least, off in HEALTH_TIMES:
            why = timespec.duration_problem(getattr(c.health, key), least, off)
            if why is not None:
                yield raw.problem((*at, key), why)
        if c.health.retries < 1:
            yield raw.problem((*at, "retries"), "must be 1 or more: podman refuses 0")


# podman's health timings: (key, the fewest nanoseconds it takes, a word it takes instead)
HEALTH_TIMES = (("interval", 0, "disable"), ("timeout", 1, None), ("start_period", 0, None))


def _depends_cycles(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    """Each dependency cycle between enabled containers, of any length, named once."""
    graph = {n: [d for d in c.depends_on if d != n] for n, c in stack.enabled_containers().items()}
    for cycle in depends.cycles(graph):
        first = cycle[0]
        shown = " -> ".join((*cycle, first))
        index = stack.containers[first].depends_on.index(cycle[1])
        yield raw.problem(
            ("containers", first, "depends_on", index),
            f"dependency cycle {shown}: systemd cannot start them; drop one depends_on",
        )


def _duplicate_units(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    seen: dict[str, KeyPath] = {}
    entries: list[tuple[str, str, KeyPath]] = []
    for name in stack.enabled_containers():
        entries.append((service_name(name, "container"), name, ("containers", name)))
    for name in stack.enabled_pods():
        entries.append((service_name(name, "pod"), name, ("pods", name)))
    for name in stack.volumes:
        entries.append((service_name(name, "volume"), name, ("volumes", name)))
    for name in stack.networks:
        entries.append((service_name(name, "network"), name, ("networks", name)))
    for name, script in stack.enabled_scripts().items():
        entries.append((service_name(name, "service"), name, ("scripts", name)))
        if script.on_calendar:
            entries.append((service_name(name, "timer"), name, ("scripts", name)))
    for unit, _name, at in entries:
        if unit in seen and seen[unit] != at:
            first = ".".join(str(x) for x in seen[unit])
            yield raw.problem(at, f"duplicate unit name {unit} (also made by {first}): rename one")
        seen.setdefault(unit, at)


class TemplateChecks:
    """Whether a template or source file can be read, checked once per file, however many
    services use it."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self._why: dict[str, str | None] = {}

    def problem(self, ref: str) -> str | None:
        if ref not in self._why:
            self._why[ref] = stackfiles.escape_problem(self.templates_dir / ref, self.templates_dir)
        return self._why[ref]


def _ports(
    ports: tuple[str, ...], at: KeyPath, raw: RawStack, published: PortTable[KeyPath]
) -> Iterator[Problem]:
    for i, text in enumerate(ports):
        here = (*at, "ports", i)
        try:
            port = parse_port(text)
        except ValueError as exc:
            yield raw.problem(here, str(exc))
            continue
        where = published.publish(port, here)
        if where is not None:
            owner = ".".join(str(x) for x in where[:2])
            if where[:2] == at[:2]:
                owner = f"{owner}.ports[{where[-1]}]"
            yield raw.problem(here, f"host port {port} is already published by {owner}")


def _networks(
    networks: tuple[str, ...], at: KeyPath, stack: Stack, raw: RawStack
) -> Iterator[Problem]:
    for i, net in enumerate(networks):
        if net not in stack.networks and net not in SPECIAL_NETWORKS:
            yield raw.problem(
                (*at, "networks", i), f"network {net!r} is not defined: add [networks.{net}]"
            )


def _container(
    name: str,
    c: Container,
    stack: Stack,
    raw: RawStack,
    templates: TemplateChecks,
    published: PortTable[KeyPath],
) -> Iterator[Problem]:
    at: KeyPath = ("containers", name)
    p = raw.problem
    yield from _image(c, at, raw)
    if c.pod is not None:
        if c.pod not in stack.pods:
            yield p((*at, "pod"), f"pod {c.pod!r} is not defined: add [pods.{c.pod}]")
        elif not stack.pods[c.pod].enabled:
            yield p((*at, "pod"), f"pod {c.pod!r} is disabled but this container is in it")
    if c.pod is not None and c.pod in stack.pods:
        if c.ports:
            yield p(
                (*at, "ports"),
                f"a container in a pod cannot publish ports: publish them on pods.{c.pod}",
            )
        if c.networks:
            yield p(
                (*at, "networks"),
                f"a container in a pod shares its network: set networks on pods.{c.pod}",
            )
    yield from _ports(c.ports, at, raw, published)
    yield from _networks(c.networks, at, stack, raw)
    for i, dep in enumerate(c.depends_on):
        if dep == name:
            yield p((*at, "depends_on", i), "a container cannot depend on itself")
        elif dep not in stack.containers:
            yield p(
                (*at, "depends_on", i), f"container {dep!r} is not defined: add [containers.{dep}]"
            )
        elif not stack.containers[dep].enabled:
            yield p(
                (*at, "depends_on", i), f"container {dep!r} is disabled: enable it or drop it here"
            )
    for i, vol in enumerate(c.volumes):
        yield from _volume(vol, (*at, "volumes", i), stack, raw)
    mounts: set[str] = set()
    paths: set[str] = set()
    for i, cfg in enumerate(c.configs):
        here = (*at, "configs", i)
        yield from _config(cfg, here, raw, templates)
        if cfg.mount in mounts:
            yield p((*here, "mount"), f"{cfg.mount} is mounted twice")
        mounts.add(cfg.mount)
        target = config_path(cfg)
        if target in paths:
            yield p((*here, "path"), f"two configs write {target}: set a distinct path")
        paths.add(target)
    yield from _env_names(c.environment, (*at, "environment"), raw)
    for i, secret in enumerate(c.secrets):
        here = (*at, "secrets", i)
        if not NAME.fullmatch(secret.name):
            yield p((*here, "name"), f"invalid secret name {secret.name!r}: {NAME_HINT}")
        if (secret.env is None) == (secret.file is None):
            yield p(
                here, "give exactly one of env (a variable name) or file (a path in the container)"
            )
        if secret.env is not None and not ENV_NAME.fullmatch(secret.env):
            yield p((*here, "env"), f"{secret.env!r} is not an environment variable name")
        if secret.file is not None and not _clean_abs(secret.file):
            yield p((*here, "file"), "must be an absolute path without '..'")
    if c.restart not in ("always", "on-failure", "no", "on-abnormal", "on-abort", "on-watchdog"):
        yield p((*at, "restart"), f"{c.restart!r} is not a systemd Restart= value")
    for i, check in enumerate(c.checks):
        yield from _check(check, (*at, "checks", i), raw)
    if c.dump is not None and not c.stateful:
        yield p((*at, "dump"), "a dump command is for stateful containers: set stateful = true")
    if (c.dump is None) != (c.restore is None):
        missing = "restore" if c.restore is None else "dump"
        yield p(
            (*at, missing),
            "give dump and restore together: a dump is only worth having if it can go back",
        )


HOST_TIMEOUTS = {
    "health_timeout": (1, 3600),
    "health_settle": (0, 300),
    "confirm_timeout": (0, 3600),
    "command_timeout": (1, 3600),
}


def _host_timeouts(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    for key, (low, high) in HOST_TIMEOUTS.items():
        if not low <= getattr(stack.host, key) <= high:
            yield raw.problem(("host", key), f"must be between {low} and {high} seconds")


def _check(check: Check, at: KeyPath, raw: RawStack) -> Iterator[Problem]:
    """A deploy-time check: exactly one kind, each in a form the switcher can run."""
    p = raw.problem
    kinds = [k for k in ("http", "tcp", "command") if getattr(check, k) is not None]
    if len(kinds) != 1:
        yield p(at, "give exactly one of http, tcp or command")
    if check.http is not None:
        url = urllib.parse.urlsplit(check.http)
        try:
            port_ok = url.port is None or url.port > 0
        except ValueError:
            port_ok = False
        if url.scheme not in ("http", "https") or not url.hostname or " " in check.http:
            yield p((*at, "http"), f"{check.http!r} is not an http:// or https:// URL with a host")
        elif not port_ok:
            yield p((*at, "http"), f"{check.http!r} has a port that is not 1-65535")
    for key in ("status", "body"):
        if getattr(check, key) is not None and check.http is None:
            yield p((*at, key), f"{key} goes with an http check")
    if check.status is not None and not 100 <= check.status <= 599:
        yield p((*at, "status"), "must be an HTTP status between 100 and 599")
    if check.tcp is not None and not _host_port(check.tcp):
        yield p((*at, "tcp"), f"{check.tcp!r}: write HOST:PORT, e.g. 127.0.0.1:5432")
    if check.command is not None and not check.command.strip():
        yield p((*at, "command"), "is empty: give a shell command that exits 0 when healthy")
    if not 1 <= check.timeout <= 300:
        yield p((*at, "timeout"), "must be between 1 and 300 seconds")


def _host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (
        bool(sep and host and port.isascii() and port.isdigit())
        and 0 < int(port) < 65536
        and not any(c in host for c in " /[]")
    )


def _image(c: Container, at: KeyPath, raw: RawStack) -> Iterator[Problem]:
    p = raw.problem
    last = c.image.rsplit("/", 1)[-1]
    if "@" in c.image or ":" in last:
        yield p((*at, "image"), "give the image without a tag or digest: put the tag in version")
    if not c.image or c.image != c.image.strip() or " " in c.image:
        yield p((*at, "image"), f"{c.image!r} is not an image name")
    if c.version is None and c.digest is None:
        yield p((*at, "version"), 'no version pinned: set version = "TAG" (or digest)')
    if c.version is not None:
        if not TAG.fullmatch(c.version):
            yield p((*at, "version"), f"{c.version!r} is not a valid image tag")
        elif not PINNED.search(c.version):
            yield p(
                (*at, "version"),
                f"{c.version!r} moves under you: pin a version with a number in it "
                '(like "1.27.3" or "1.27-alpine"), or a digest',
            )
    if c.digest is not None and not DIGEST.fullmatch(c.digest):
        yield p((*at, "digest"), "must look like sha256:<64 hex digits>")
    if c.auto_update and c.version is None:
        yield p((*at, "auto_update"), "podman auto-update follows a tag: set version")


def _volume(spec: str, at: KeyPath, stack: Stack, raw: RawStack) -> Iterator[Problem]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        yield raw.problem(at, f"{spec!r}: write SOURCE:/path/in/container[:options]")
        return
    source, dest = parts[0], parts[1]
    if not _clean_abs(dest):
        yield raw.problem(at, f"{spec!r}: the container path must be absolute, without '..'")
    if source.startswith("/"):
        if not _clean_abs(source):
            yield raw.problem(at, f"{spec!r}: the host path must not contain '..'")
    elif source not in stack.volumes:
        yield raw.problem(at, f"volume {source!r} is not defined: add [volumes.{source}]")


def _config(
    cfg: ConfigFile, at: KeyPath, raw: RawStack, templates: TemplateChecks
) -> Iterator[Problem]:
    if (cfg.template is None) == (cfg.source is None):
        yield raw.problem(at, "give exactly one of template or source")
    for key in ("template", "source"):
        ref = getattr(cfg, key)
        if ref is not None:
            yield from _template_file(ref, (*at, key), raw, templates)
    if not _clean_abs(cfg.mount):
        yield raw.problem((*at, "mount"), "must be an absolute path in the container, without '..'")
    if cfg.path is not None and not _clean_relative(cfg.path):
        yield raw.problem(
            (*at, "path"),
            f"{cfg.path!r} escapes the service's folder: use a relative path without '..'",
        )
    if not MODE.fullmatch(cfg.mode):
        yield raw.problem((*at, "mode"), f'{cfg.mode!r} is not a file mode like "0644"')


def _template_file(
    ref: str, at: KeyPath, raw: RawStack, templates: TemplateChecks
) -> Iterator[Problem]:
    if not _clean_relative(ref):
        yield raw.problem(at, f"{ref!r} escapes the templates folder: use a path inside it")
    elif not unitfile.CONTROL.search(ref):  # a control character is reported by lines.py
        why = templates.problem(ref)
        if why is not None:
            folder = templates.templates_dir
            shown = f"{folder.parent.name}/{folder.name}/{ref}"
            yield raw.problem(at, f"template {shown} {why}")


def _env_names(env: dict[str, str], at: KeyPath, raw: RawStack) -> Iterator[Problem]:
    for key in env:
        if not ENV_NAME.fullmatch(key):
            yield raw.problem((*at, key), f"{key!r} is not an environment variable name")


def _clean_relative(path: str) -> bool:
    return (
        bool(path) and not path.startswith("/") and ".." not in path.split("/") and "\\" not in path
    )


def _clean_abs(path: str) -> bool:
    return path.startswith("/") and ".." not in path.split("/")


def config_path(cfg: ConfigFile) -> str:
    """Where a config file lives under its service's folder in the bundle."""
    if cfg.path is not None:
        return posixpath.normpath(cfg.path)
    ref = cfg.template or cfg.source or "config"
    base = posixpath.basename(ref)
    return base[:-3] if cfg.template and base.endswith(".j2") else base
