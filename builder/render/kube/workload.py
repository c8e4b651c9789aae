"""A quadlet pod, or a container outside any pod, as one Deployment or StatefulSet.

The containers of one quadlet pod share one Kubernetes Pod (one network namespace, as there);
their config files become ConfigMaps mounted where the quadlet unit mounts them, or Secret
references when the file embeds a secret; named volumes become PersistentVolumeClaims.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

from builder.render.kube.names import key, label
from builder.render.kube.sink import Obj, Sink
from builder.render.output import BundleFile
from builder.render.validate import config_path
from builder.secrets.files import MARKER_RE
from builder.stack.model import Container, HealthCheck, Pod, Stack
from builder.stack.ports import parse_port
from builder.stack.timespec import duration_ns

_USER = re.compile(r"([0-9]+)(?::([0-9]+))?")
_QUALIFIED = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
CONFIG_MAX = 1024 * 1024 - 4096  # Kubernetes' 1 MiB per object, less its metadata
SECRET_KEY = "value"  # the key of each Secret a container uses: `--from-literal=value=...`


def workload(
    sink: Sink,
    stack: Stack,
    name: str,
    pod: Pod | None,
    members: list[tuple[str, Container]],
    files: dict[str, BundleFile],
    images: dict[str, str],
) -> None:
    """Add the workload of pod (or lone container) `name` and its ConfigMaps to `sink`."""
    where = f"pods.{name}" if pod is not None else f"containers.{name}"
    w = _Pod(sink, stack, files, label(name))
    containers = [w.container(cname, c, images[cname]) for cname, c in members]
    wl = label(name)
    labels = {"app.kubernetes.io/name": wl}
    template: Obj = {
        "metadata": {"labels": {**labels, "app.kubernetes.io/part-of": sink.namespace}},
        "spec": {
            "containers": containers,
            # no NAME_PORT variables for every Service: the containers see what podman gave them
            "enableServiceLinks": False,
        },
    }
    if w.volumes:
        template["spec"]["volumes"] = [w.volumes[v] for v in sorted(w.volumes)]
    if w.annotations:
        template["metadata"]["annotations"] = dict(sorted(w.annotations.items()))
    spec: Obj = {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}
    stateful = bool(w.claims) and any(c.stateful for _, c in members)
    if not stateful and w.claims:
        spec["strategy"] = {"type": "Recreate"}  # a ReadWriteOnce volume: one Pod at a time
    description = (pod.description if pod else None) or members[0][1].description
    meta: dict[str, Any] = {"labels": {**sink.meta(wl)["labels"], **labels}}
    if description:
        meta["annotations"] = {"kubernetes.io/description": description}
    kind = "StatefulSet" if stateful else "Deployment"
    sink.add("apps/v1", kind, wl, where, {"spec": spec}, **meta)
    if pod is not None and pod.networks:
        sink.note(
            f"{where}.networks",
            f"pod {name} joins {', '.join(pod.networks)}",
            "a cluster has one flat network: restrict who reaches whom with NetworkPolicy objects",
        )


class _Pod:
    def __init__(self, sink: Sink, stack: Stack, files: dict[str, BundleFile], pod: str) -> None:
        self.sink = sink
        self.pod = pod
        self.stack = stack
        self.files = files
        self.volumes: dict[str, Obj] = {}
        self.claims: set[str] = set()
        self.annotations: dict[str, str] = {}

    def put(self, name: str, entry: Obj, origin: str) -> None:
        """A volume of the Pod; two sources that name one volume are a collision."""
        self.volumes[name] = entry
        self.sink.origins.append((f"volume of {self.pod}", name, origin))

    def container(self, name: str, c: Container, image: str) -> Obj:
        at = f"containers.{name}"
        spec: Obj = {"name": label(name), "image": image}
        self.sink.origins.append((f"container of {self.pod}", spec["name"], at))
        if c.entrypoint:
            ep = c.entrypoint
            spec["command"] = json.loads(ep) if ep.startswith("[") else [ep]
        if c.command:
            spec["args"] = list(c.command)
        env: list[Obj] = [{"name": k, "value": v} for k, v in c.environment.items()]
        mounts: list[Obj] = []
        for s in c.secrets:
            secret = self.secret(s.name)
            if s.env:
                ref = {"secretKeyRef": {"name": secret, "key": SECRET_KEY}}
                env.append({"name": s.env, "valueFrom": ref})
                continue
            target = s.file or s.name
            target = target if target.startswith("/") else f"/run/secrets/{target}"
            vol = label("secret", secret)
            items = [{"key": SECRET_KEY, "path": SECRET_KEY}]
            entry = {"name": vol, "secret": {"secretName": secret, "items": items}}
            self.put(vol, entry, f"secrets.{s.name}")
            mounts.append(
                {"name": vol, "mountPath": target, "subPath": SECRET_KEY, "readOnly": True}
            )
        if env:
            spec["env"] = sorted(env, key=lambda e: (e["name"], "valueFrom" in e))
        if c.ports:
            ports = sorted({(p.container_port, p.proto.upper()) for p in map(parse_port, c.ports)})
            spec["ports"] = [{"containerPort": n, "protocol": proto} for n, proto in ports]
        for i, vol in enumerate(c.volumes):
            mount = self.volume(f"{at}.volumes[{i}]", vol)
            if mount:
                mounts.append(mount)
        for i, cfg in enumerate(c.configs):
            mounts.append(self.config(name, f"{at}.configs[{i}]", cfg.mount, cfg.mode, cfg))
        if mounts:
            spec["volumeMounts"] = mounts
        if c.health is not None:
            probe = self.probe(at, c.health)
            if probe:
                spec["readinessProbe"] = probe
        if c.user:
            m = _USER.fullmatch(c.user)
            if m:
                ctx = {"runAsUser": int(m.group(1))}
                if m.group(2):
                    ctx["runAsGroup"] = int(m.group(2))
                spec["securityContext"] = ctx
            else:
                self.sink.note(
                    f"{at}.user",
                    f"user {c.user!r} is a name",
                    "Kubernetes runs as a numeric user: set securityContext.runAsUser",
                )
        if c.metrics is not None:
            if "prometheus.io/port" in self.annotations:
                self.sink.note(
                    f"{at}.metrics",
                    "a second metrics endpoint in one pod",
                    "describe it in a ServiceMonitor (prometheus-operator)",
                )
            else:
                self.annotations.update(
                    {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(c.metrics.port),
                        "prometheus.io/path": c.metrics.path,
                    }
                )
        for k, v in c.labels.items():
            if _QUALIFIED.fullmatch(k):
                self.annotations[k] = v
            else:
                self.sink.note(
                    f"{at}.labels", f"label {k!r} is no Kubernetes key", "rename it (a.b/c-d)"
                )
        self.notes(name, c)
        return spec

    def notes(self, name: str, c: Container) -> None:
        at = f"containers.{name}"
        note = self.sink.note
        if c.restart != "always":
            note(
                f"{at}.restart",
                f'restart = "{c.restart}"',
                "a Deployment restarts its containers always; run a one-off as a Job",
            )
        if c.auto_update:
            note(
                f"{at}.auto_update",
                "podman auto-update pulls a newer image of the same tag",
                "pin a new version and apply again; or Renovate, Flux image automation or Keel",
            )
        if c.depends_on:
            note(
                f"{at}.depends_on",
                f"starts after {', '.join(c.depends_on)}",
                "a Pod starts its containers together and restarts them until what they need "
                "answers; order them with initContainers or startupProbes",
            )
        nets = [n for n in c.networks if n != "host"]
        if nets:
            note(
                f"{at}.networks",
                f"joins {', '.join(nets)}",
                "a cluster has one flat network: use Services by name and NetworkPolicy objects",
            )
        if c.checks:
            note(
                f"{at}.checks",
                "deploy-time checks of the switcher (a failed one rolls back)",
                "readinessProbes gate a rollout; `kubectl rollout undo` rolls back",
            )
        if c.dump or c.restore:
            note(
                f"{at}.dump",
                "data dumps taken before a switch and restored by rollback --restore-data",
                "Velero backup hooks (pre.hook.backup.velero.io/command) or the operator's own",
            )

    def secret(self, name: str) -> str:
        k8s = label(name)
        self.sink.secrets[k8s] = name
        self.sink.origins.append(("Secret", k8s, f"secret {name}"))
        return k8s

    def volume(self, at: str, spec: str) -> Obj | None:
        source, dest, *rest = spec.split(":")
        options = [o for o in ",".join(rest).split(",") if o]
        if source.startswith("/"):
            self.sink.note(
                at,
                f"bind mount of the host's {source}",
                "a Pod may run on any node: use a PersistentVolumeClaim, a ConfigMap, or a "
                "hostPath volume on a pinned node (a DaemonSet for per-node agents)",
            )
            return None
        claim = label(source)
        self.claims.add(claim)
        entry = {"name": claim, "persistentVolumeClaim": {"claimName": claim}}
        self.put(claim, entry, f"volumes.{source}")
        mount: Obj = {"name": claim, "mountPath": dest}
        for o in options:
            if o == "ro":
                mount["readOnly"] = True
            elif o not in ("rw", "z", "Z"):  # SELinux labels: the cluster's runtime sets them
                self.sink.note(at, f"volume option {o!r}", "set it on the StorageClass")
        return mount

    def config(self, service: str, at: str, mount: str, mode: str, cfg: Any) -> Obj:
        path = config_path(cfg)
        data = self.files[f"files/{service}/{path}"].data
        name = label(service, path)
        k = key(path)
        if len(data) > CONFIG_MAX:
            self.sink.problems.append(
                f"{at}: {path} is {len(data)} bytes; a ConfigMap or Secret holds at most 1 MiB: "
                "put the file in the image or on a volume"
            )
        item = {"key": k, "path": k, "mode": int(mode, 8)}
        if MARKER_RE.search(data):
            self.sink.secret_files[name] = (k, data, at)
            self.put(name, {"name": name, "secret": {"secretName": name, "items": [item]}}, at)
            self.sink.origins.append(("Secret", name, at))
        else:
            self.put(name, {"name": name, "configMap": {"name": name, "items": [item]}}, at)
            try:
                body: Obj = {"data": {k: data.decode()}}
            except UnicodeDecodeError:
                body = {"binaryData": {k: base64.b64encode(data).decode()}}
            self.sink.add("v1", "ConfigMap", name, at, body)
        return {"name": name, "mountPath": mount, "subPath": k, "readOnly": True}

    def probe(self, at: str, h: HealthCheck) -> Obj | None:
        period = _seconds(h.interval)
        if period == 0:
            self.sink.note(f"{at}.health", "a health check with no interval", "none: no probe")
            return None
        # podman marks the container unhealthy, it does not restart it: a readiness probe
        return {
            "exec": {"command": health_command(h.cmd)},
            "periodSeconds": period,
            "timeoutSeconds": max(1, _seconds(h.timeout)),
            "failureThreshold": h.retries,
            "initialDelaySeconds": _seconds(h.start_period),
        }


def health_command(cmd: str) -> list[str]:
    """podman's HealthCmd: a JSON array (["CMD", ...] runs as is, ["CMD-SHELL", "..."] in a
    shell), else a shell command line."""
    if cmd.lstrip().startswith("["):
        try:
            words = json.loads(cmd)
        except ValueError:
            words = None
        if isinstance(words, list) and len(words) > 1 and all(isinstance(w, str) for w in words):
            if words[0] == "CMD":
                return list(words[1:])
            if words[0] == "CMD-SHELL":
                return ["/bin/sh", "-c", " ".join(words[1:])]
    return ["/bin/sh", "-c", cmd]


def _seconds(text: str) -> int:
    ns = duration_ns(text)
    return math.ceil((ns or 0) / 10**9)
