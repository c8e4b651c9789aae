"""What a host runs outside its containers: timers as CronJobs where they can be, and the notes
for what a cluster does its own way (the tunnel, backups, host networking, scripts)."""

from __future__ import annotations

import re

from builder.render.kube.names import key, label
from builder.render.kube.sink import Sink
from builder.render.output import BundleFile
from builder.secrets.files import MARKER_RE
from builder.stack.model import Container, Stack
from builder.stack.timespec import timespan_usec

# the image a CronJob runs a host script in; written suspended, to be checked first
SCRIPT_IMAGE = "docker.io/library/busybox:1.37.0"
_SPECIAL = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}
_DAILY_AT = re.compile(r"(?:\*-\*-\* )?([0-9]{1,2}):([0-9]{2})(?::00)?")


def cron_schedule(on_calendar: str) -> str | None:
    """A systemd calendar event as a cron schedule, when cron can say the same."""
    text = on_calendar.strip().lower()
    if text in _SPECIAL:
        return _SPECIAL[text]
    m = _DAILY_AT.fullmatch(text)
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return f"{int(m.group(2))} {int(m.group(1))} * * *"
    return None


def host_notes(sink: Sink, stack: Stack, skipped: dict[str, Container]) -> None:
    note = sink.note
    for name, c in sorted(skipped.items()):
        note(
            f"containers.{name}.networks",
            f"{c.description or name} runs on the host network: not exported",
            "an Ingress controller (k3s ships Traefik) replaces a reverse proxy; a DaemonSet "
            "with hostNetwork runs a per-node agent (node-exporter: kube-prometheus-stack)",
        )
    if stack.tunnel() is not None:
        note(
            "wireguard",
            "the WireGuard tunnel between hosts",
            "k3s encrypts pod traffic with --flannel-backend=wireguard-native; reach the "
            "cluster from outside through a VPN (WireGuard, Tailscale operator)",
        )
    if stack.host.expose == "wireguard":
        note(
            "host.expose",
            "every published port binds the tunnel address",
            "Services stay ClusterIP; NetworkPolicy objects keep the rest out",
        )
    if stack.backup is not None and stack.backup.enabled:
        note(
            "backup",
            f"nightly {stack.backup.tool} backups of the stateful volumes",
            "Velero or k8up (restic/kopia to S3), or CSI VolumeSnapshots",
        )
    if stack.host.rootless:
        note(
            "host.rootless",
            "every unit runs under one user's systemd and rootless podman",
            "set securityContext (runAsNonRoot, runAsUser) on the Pods",
        )


def scripts(sink: Sink, stack: Stack, files: dict[str, BundleFile]) -> None:
    for name, script in sorted(stack.enabled_scripts().items()):
        where = f"scripts.{name}"
        data = files[f"scripts/{name}.sh"].data
        if script.on_calendar is None:
            what = "runs at activation and boot" if script.on_activation else "run by hand"
            instead = (
                "an initContainer of the Pod that needs it, or a Job"
                if script.on_activation
                else "a Job: kubectl create job --from=cronjob/… or a Job manifest"
            )
            sink.note(where, f"a host script, {what}", instead)
            continue
        schedule = cron_schedule(script.on_calendar)
        if schedule is None or MARKER_RE.search(data):
            why = "it embeds a secret" if schedule else f"cron cannot say {script.on_calendar!r}"
            sink.note(where, f"a host script on a timer ({why})", "write its CronJob by hand")
            continue
        cronjob(sink, name, where, schedule, data, script.environment, script.timeout)
        sink.note(
            where,
            "a host script on a timer: written as a suspended CronJob in "
            f"{SCRIPT_IMAGE} (it ran on the host)",
            "check it works in a container, then set spec.suspend to false",
        )
        if script.randomized_delay:
            sink.note(f"{where}.randomized_delay", "a random delay", "cron has none: left out")


def cronjob(
    sink: Sink,
    name: str,
    where: str,
    schedule: str,
    data: bytes,
    env: dict[str, str],
    timeout: str,
) -> None:
    cm = label(name, "script")
    sink.add("v1", "ConfigMap", cm, where, {"data": {key(f"{name}.sh"): data.decode()}})
    container = {
        "name": label(name),
        "image": SCRIPT_IMAGE,
        "command": ["/bin/sh", f"/scripts/{key(name + '.sh')}"],
        "volumeMounts": [{"name": "script", "mountPath": "/scripts", "readOnly": True}],
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    pod = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "script", "configMap": {"name": cm, "defaultMode": 0o755}}],
    }
    job: dict[str, object] = {"template": {"spec": pod}, "backoffLimit": 0}
    usec = timespan_usec(timeout)
    if usec:
        job["activeDeadlineSeconds"] = max(1, usec // 10**6)
    spec = {
        "schedule": schedule,
        "suspend": True,
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": job},
    }
    sink.add("batch/v1", "CronJob", label(name), where, {"spec": spec})
