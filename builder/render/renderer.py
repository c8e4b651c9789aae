"""Stack → bundle files: quadlet units, systemd units, rendered configs and scripts.

Deterministic: the same stack gives the same bytes. Order follows the stack only where it
carries meaning (command words, the order of ports and mounts); tables are sorted.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

import attrs

from builder.base.errors import Problem
from builder.render.features import backup, hooks, monitoring, notify, reload, wireguard
from builder.render.output import (
    QUADLET_DIR,
    SYSTEMD_DIR,
    BundleFile,
    Hooks,
    Rendered,
    State,
    Unit,
)
from builder.render.output import Check as UnitCheck
from builder.render.templates import TemplateFailure, TemplateRenderer
from builder.render.validate import config_path
from builder.secrets.files import marker
from builder.stack import unitfile
from builder.stack.model import Check, Container, Network, Pod, Script, Stack, Volume
from builder.stack.names import service_name, unit_file


def image_ref(c: Container) -> str:
    """IMAGE:TAG, IMAGE@DIGEST, or IMAGE:TAG@DIGEST (locked: podman pulls the digest)."""
    if c.digest and c.version:
        return f"{c.image}:{c.version}@{c.digest}"
    if c.digest:
        return f"{c.image}@{c.digest}"
    return f"{c.image}:{c.version}"


def check_entry(check: Check) -> UnitCheck:
    """A check as the manifest carries it: its kind, target and only what applies to it."""
    if check.http is not None:
        return UnitCheck("http", check.http, check.status or 200, check.body, check.timeout)
    if check.tcp is not None:
        return UnitCheck("tcp", check.tcp, timeout=check.timeout)
    assert check.command is not None  # validation: exactly one of http, tcp, command
    return UnitCheck("command", check.command, timeout=check.timeout)


def render_stack(
    stack: Stack,
    renderer: TemplateRenderer,
    extra_context: dict[str, Any] | None = None,
    secrets: Any = None,
    peers: tuple[wireguard.Peer, ...] = (),
) -> Rendered:
    """`secrets`: a builder.render.features.secrets.SecretBinding (None: secret names used as they are).

    `peers`: the WireGuard peers, resolved from the other stacks (wireguard.resolve_peers).
    """
    extra = {
        **(extra_context or {}),
        **({"secret": secrets.template_function()} if secrets else {}),
    }
    r = _Renderer(stack, renderer, extra, secrets)
    r.peers = peers
    r.run()
    return Rendered(
        dict(sorted(r.files.items())),
        dict(sorted(r.units.items())),
        dict(sorted(r.images.items())),
        tuple(r.problems),
        secrets.manifest_entries() if secrets else {},
        dict(sorted(secrets.rendered.items())) if secrets else {},
        r.hooks,
    )


class _Renderer:
    def __init__(
        self, stack: Stack, renderer: TemplateRenderer, extra: dict[str, Any], secrets: Any
    ) -> None:
        self.stack = stack
        self.secrets = secrets
        self.host = stack.host.name
        self.current = posixpath.join(stack.host.state_dir, "current")
        self.templates = renderer
        self.extra = extra
        self.files: dict[str, BundleFile] = {}
        self.units: dict[str, Unit] = {}
        self.images: dict[str, str] = {}
        self.problems: list[Problem] = []
        self.hooks = Hooks()
        self.live: dict[str, list[str]] = {}  # container -> its config files under STATE/live
        self._base: dict[str, Any] | None = None
        # WireGuard: the tunnel's unit, the ports metrics add, the units ordered after it
        self.peers: tuple[wireguard.Peer, ...] = ()
        wg = stack.tunnel()
        self.tunnel_unit = wireguard.unit_key(wg) if wg else None
        self.extra_ports = monitoring.extra_ports(stack)
        self.tunnel_users = wireguard.tunnel_users(stack, self.extra_ports)

    def context(self, **more: Any) -> dict[str, Any]:
        if self._base is None:
            # built once: every template sees the same host-wide view
            s = self.stack
            self._base = {
                "host": attrs.asdict(s.host),
                "vars": s.vars,
                "containers": {n: attrs.asdict(c) for n, c in s.enabled_containers().items()},
                "pods": {n: attrs.asdict(p) for n, p in s.enabled_pods().items()},
                "state_dir": s.host.state_dir,
                "wireguard": wireguard.view(s),
                **self.extra,
            }
        return {**self._base, **more}

    def run(self) -> None:
        s = self.stack
        for name, volume in sorted(s.volumes.items()):
            self.add_unit(name, "volume", self.volume(name, volume), (), (), None, True)
        for name, network in sorted(s.networks.items()):
            self.add_unit(name, "network", self.network(name, network), (), (), None, True)
        for name, pod in sorted(s.enabled_pods().items()):
            requires = tuple(unit_file(n, "network") for n in pod.networks if n in s.networks)
            requires += self.tunnel_requires(("pods", name))
            self.add_unit(name, "pod", self.pod(name, pod), (), requires, None, True)
        for name, c in sorted(s.enabled_containers().items()):
            extra_files = self.configs(name, c)
            requires = self.container_requires(c) + self.tunnel_requires(("containers", name))
            ref = image_ref(c)
            self.images[name] = ref
            self.add_unit(
                name, "container", self.container(name, c), extra_files, requires, ref, True
            )
            self.units[unit_file(name, "container")] = dataclasses.replace(
                self.units[unit_file(name, "container")],
                checks=tuple(check_entry(ch) for ch in c.checks),
                state=self.state_entry(name, c),
                reload=tuple(sorted(self.live.get(name, ()))) if c.reload is not None else None,
            )
        for name, script in sorted(s.enabled_scripts().items()):
            self.script(name, script)
        backup.render(self)  # [backup]: scripts/backup.py, backup.service, backup.timer
        notify.render(self)  # [notify]: notify/notify.json, read by the switcher
        self.hooks = hooks.render(self)  # [hooks]: scripts/hooks/*.sh
        if s.tunnel() is not None:
            self.tunnel()

    def tunnel(self) -> None:
        """The WireGuard configuration (private key completed on the server) and its unit."""
        wg = self.stack.tunnel()
        assert wg is not None
        name = wireguard.unit_name(wg)
        path = wireguard.config_path(wg)
        self.files[path] = BundleFile(
            wireguard.config_text(self.stack, self.peers, marker(wg.private_key)), 0o600
        )
        conf = self.host_path(path, name, "service", ("wireguard", "private_key"))
        text = wireguard.unit_text(self.stack, conf)
        self.add_unit(name, "service", text, (path,), (), None, True)

    def tunnel_requires(self, at: tuple[str, str]) -> tuple[str, ...]:
        return (self.tunnel_unit,) if self.tunnel_unit and at in self.tunnel_users else ()

    def tunnel_after(self, at: tuple[str, str]) -> list[tuple[str, str]]:
        """Started after the tunnel (the address must exist), not stopped with it."""
        unit = self.tunnel_requires(at)
        return [("Wants", unit[0]), ("After", unit[0])] if unit else []

    def add_unit(
        self,
        name: str,
        kind: str,
        text: bytes,
        extra_files: tuple[str, ...],
        requires: tuple[str, ...],
        image: str | None,
        enable: bool,
    ) -> None:
        folder = SYSTEMD_DIR if kind in ("service", "timer") else QUADLET_DIR
        key = unit_file(name, kind)
        path = f"{folder}/{key}"
        self.files[path] = BundleFile(text)
        self.units[key] = Unit(
            key=key,
            kind=kind,
            path=path,
            service=service_name(name, kind),
            closure="",  # filled in when the manifest is built, from the final file entries
            files=tuple(sorted({path, *extra_files})),
            requires=tuple(sorted(set(requires))),
            image=image,
            enable=enable,
        )

    def state_entry(self, name: str, c: Container) -> State | None:
        """A stateful container's named volumes (podman volume names) and dump commands."""
        if not c.stateful:
            return None
        volumes = sorted(
            {v.split(":")[0] for v in c.volumes if v.split(":")[0] in self.stack.volumes}
        )
        return State(name, tuple(volumes), c.dump, c.restore)

    def container_requires(self, c: Container) -> tuple[str, ...]:
        req = [unit_file(d, "container") for d in c.depends_on]
        if c.pod:
            req.append(unit_file(c.pod, "pod"))
        req += [unit_file(n, "network") for n in c.networks if n in self.stack.networks]
        req += [
            unit_file(v.split(":")[0], "volume")
            for v in c.volumes
            if v.split(":")[0] in self.stack.volumes
        ]
        return tuple(req)

    def configs(self, name: str, c: Container) -> tuple[str, ...]:
        paths = []
        for cfg in c.configs:
            path = f"files/{name}/{config_path(cfg)}"
            try:
                if cfg.template is not None:
                    data = self.templates.render(
                        cfg.template,
                        self.context(service=name, container=self.context()["containers"][name]),
                    )
                else:
                    data = self.templates.source(cfg.source or "")
            except TemplateFailure as exc:
                self.problems.append(exc.problem)
                data = b""
            self.files[path] = BundleFile(data, int(cfg.mode, 8))
            paths.append(path)
        return tuple(paths)

    def container(self, name: str, c: Container) -> bytes:
        unit: list[tuple[str, str]] = [
            ("Description", unitfile.escape(c.description or f"{name} ({self.host})"))
        ]
        for dep in c.depends_on:
            unit += [
                ("Requires", service_name(dep, "container")),
                ("After", service_name(dep, "container")),
            ]
        unit += self.tunnel_after(("containers", name))
        body: list[tuple[str, str]] = [("ContainerName", name), ("Image", image_ref(c))]
        if c.pod:
            body.append(("Pod", unit_file(c.pod, "pod")))
        if c.entrypoint:
            body.append(("Entrypoint", unitfile.escape(c.entrypoint, True)))
        if c.command:
            body.append(("Exec", unitfile.join_words(c.command)))
        if c.user:
            body.append(("User", unitfile.escape(c.user, True)))
        for key, value in sorted(c.environment.items()):
            body.append(("Environment", unitfile.quote(f"{key}={value}")))
        for secret in sorted(c.secrets, key=lambda s: (s.name, s.env or "", s.file or "")):
            at = ("containers", name, "secrets", c.secrets.index(secret), "name")
            ref = (
                self.secrets.podman_name(secret.name, unit_file(name, "container"), at)
                if self.secrets
                else secret.name
            )
            if secret.env:
                body.append(("Secret", f"{ref},type=env,target={secret.env}"))
            else:
                body.append(("Secret", f"{ref},type=mount,target={secret.file}"))
        for port in (*c.ports, *self.extra_ports.get(("containers", name), ())):
            body.append(("PublishPort", port))
        for net in c.networks:
            body.append(
                ("Network", unit_file(net, "network") if net in self.stack.networks else net)
            )
        for vol in c.volumes:
            source, _, rest = vol.partition(":")
            if source in self.stack.volumes:
                source = unit_file(source, "volume")
            body.append(("Volume", unitfile.escape(f"{source}:{rest}")))
        for cfg in c.configs:
            origin = self.templates.shown(cfg.template or cfg.source or "")
            path = f"files/{name}/{config_path(cfg)}"
            host_path = self.host_path(path, name, "container", origin)
            if c.reload is not None and host_path == f"{self.current}/{path}":
                # a running container must see the new file: features/reload.py
                host_path = reload.live_path(self.stack.host.state_dir, path)
                self.live.setdefault(name, []).append(path)
            body.append(("Volume", unitfile.escape(f"{host_path}:{cfg.mount}:ro")))
        labels = dict(c.labels)
        labels["bundle.host"] = self.host
        labels["bundle.service"] = name
        if c.auto_update:
            body.append(("AutoUpdate", "registry"))
        for key, value in sorted(labels.items()):
            body.append(("Label", unitfile.quote(f"{key}={value}")))
        if c.health:
            h = c.health
            body += [
                ("HealthCmd", unitfile.quote(h.cmd)),
                ("HealthInterval", h.interval),
                ("HealthTimeout", h.timeout),
                ("HealthRetries", str(h.retries)),
                ("HealthStartPeriod", h.start_period),
            ]
        service = [("Restart", c.restart), ("TimeoutStartSec", "900")]
        service += reload.service_lines(name, c)
        return unitfile.render(
            self.host,
            [
                ("Unit", unit),
                ("Container", body),
                ("Service", service),
                ("Install", [("WantedBy", self.stack.host.boot_target)]),
            ],
        )

    def host_path(self, path: str, name: str, kind: str, origin: str | tuple[Any, ...]) -> str:
        """Where the server has a bundle file: in the generation, or completed with secrets."""
        f = self.files[path]
        if self.secrets:
            target = self.secrets.file_target(path, f.data, f.mode, unit_file(name, kind), origin)
            if target:
                return str(target)
        return f"{self.current}/{path}"

    def pod(self, name: str, pod: Pod) -> bytes:
        body: list[tuple[str, str]] = [
            ("PodName", service_name(name, "pod").removesuffix(".service"))
        ]
        for port in (*pod.ports, *self.extra_ports.get(("pods", name), ())):
            body.append(("PublishPort", port))
        for net in pod.networks:
            body.append(
                ("Network", unit_file(net, "network") if net in self.stack.networks else net)
            )
        unit = [("Description", unitfile.escape(pod.description or f"pod {name} ({self.host})"))]
        unit += self.tunnel_after(("pods", name))
        return unitfile.render(
            self.host,
            [
                ("Unit", unit),
                ("Pod", body),
                ("Install", [("WantedBy", self.stack.host.boot_target)]),
            ],
        )

    def volume(self, name: str, volume: Volume) -> bytes:
        body: list[tuple[str, str]] = [("VolumeName", name)]
        for key, value in (
            ("Driver", volume.driver),
            ("Device", volume.device),
            ("Type", volume.type),
            ("Options", volume.options),
        ):
            if value:
                body.append((key, unitfile.escape(value)))
        labels = {**volume.labels, "bundle.host": self.host}
        for key, value in sorted(labels.items()):
            body.append(("Label", unitfile.quote(f"{key}={value}")))
        unit = [("Description", f"volume {name} ({self.host})")]
        return unitfile.render(
            self.host,
            [
                ("Unit", unit),
                ("Volume", body),
                ("Install", [("WantedBy", self.stack.host.boot_target)]),
            ],
        )

    def network(self, name: str, network: Network) -> bytes:
        body: list[tuple[str, str]] = [("NetworkName", name)]
        if network.subnet:
            body.append(("Subnet", network.subnet))
        if network.gateway:
            body.append(("Gateway", network.gateway))
        if network.internal:
            body.append(("Internal", "true"))
        if network.ipv6:
            body.append(("IPv6", "true"))
        labels = {**network.labels, "bundle.host": self.host}
        for key, value in sorted(labels.items()):
            body.append(("Label", unitfile.quote(f"{key}={value}")))
        unit = [("Description", f"network {name} ({self.host})")]
        return unitfile.render(
            self.host,
            [
                ("Unit", unit),
                ("Network", body),
                ("Install", [("WantedBy", self.stack.host.boot_target)]),
            ],
        )

    def script(self, name: str, script: Script) -> None:
        path = f"scripts/{name}.sh"
        try:
            if script.template is not None:
                data = self.templates.render(script.template, self.context(script=name))
            elif script.source is not None:
                data = self.templates.source(script.source)
            else:
                data = f"#!/bin/sh\nset -eu\n{script.run}\n".encode()
        except TemplateFailure as exc:
            self.problems.append(exc.problem)
            data = b""
        self.files[path] = BundleFile(data, 0o755)
        unit = [("Description", unitfile.escape(script.description or f"{name} ({self.host})"))]
        ref = script.template or script.source
        origin = self.templates.shown(ref) if ref else f"scripts.{name}.run"
        service: list[tuple[str, str]] = [
            ("Type", "oneshot"),
            ("ExecStart", self.host_path(path, name, "service", origin)),
            ("TimeoutStartSec", script.timeout),
        ]
        for key, value in sorted(script.environment.items()):
            service.append(("Environment", unitfile.quote(f"{key}={value}", command=False)))
        timed = script.on_calendar is not None
        files = [path]
        if script.on_activation:
            service[1:1] = [("RemainAfterExit", "yes")]
            if script.stop is not None:
                stop_path = f"scripts/{name}.stop.sh"
                self.files[stop_path] = BundleFile(
                    f"#!/bin/sh\nset -eu\n{script.stop}\n".encode(), 0o755
                )
                service.insert(3, ("ExecStop", f"{self.current}/{stop_path}"))
                files.append(stop_path)
        sections = [("Unit", unit), ("Service", service)]
        if script.on_activation:
            sections.append(("Install", [("WantedBy", self.stack.host.boot_target)]))
        elif not timed:
            sections.append(("Install", []))
        self.add_unit(
            name,
            "service",
            unitfile.render(self.host, sections),
            tuple(files),
            (),
            None,
            script.on_activation,
        )
        if timed:
            timer = [("OnCalendar", script.on_calendar or ""), ("Persistent", "true")]
            if script.randomized_delay:
                timer.append(("RandomizedDelaySec", script.randomized_delay))
            text = unitfile.render(
                self.host,
                [
                    ("Unit", [("Description", f"timer for {name} ({self.host})")]),
                    ("Timer", timer),
                    ("Install", [("WantedBy", "timers.target")]),
                ],
            )
            self.add_unit(name, "timer", text, (), (unit_file(name, "service"),), None, True)
