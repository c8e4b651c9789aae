"""Which podman first understands each quadlet key, and the keys a host's podman lacks.

podman's quadlet generator skips a unit with a key it does not know (the unit "vanishes": no
service, an error only in the generator's log). So a build compares every key of every quadlet
section it wrote with the podman the host runs (`[host] podman = "5.4"`) and refuses, naming the
key, the unit and the version that adds it.

The table is read from podman's own generator (pkg/systemd/quadlet/quadlet.go, the supported
keys of each group at the tags v4.4.0 … v5.6.0): every key of the four unit types bundle writes,
at the first release that accepts it. A key missing from the table is unknown to every podman
up to the newest listed, and is refused whatever the host runs. Pure: text in, problems out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from builder.base.errors import Problem

Version = tuple[int, ...]

# the oldest podman whose quadlet reads each unit type
KIND_SINCE = {"container": "4.4", "volume": "4.4", "network": "4.4", "pod": "5.0"}
SECTION = {"container": "Container", "pod": "Pod", "volume": "Volume", "network": "Network"}
NEWEST = "5.6"
VERSION = re.compile(r"([0-9]+)\.([0-9]+)")

_SINCE: dict[str, dict[str, str]] = {
    "Container": {
        "4.4": (
            "AddCapability AddDevice Annotation ContainerName DropCapability Environment "
            "EnvironmentFile EnvironmentHost Exec ExposeHostPort Group Image Label Network "
            "NoNewPrivileges Notify PodmanArgs PublishPort ReadOnly RemapGid RemapUid "
            "RemapUidSize RemapUsers RunInit SeccompProfile Timezone User VolatileTmp Volume"
        ),
        "4.5": (
            "HealthCmd HealthInterval HealthOnFailure HealthRetries HealthStartPeriod "
            "HealthStartupCmd HealthStartupInterval HealthStartupRetries HealthStartupSuccess "
            "HealthStartupTimeout HealthTimeout IP IP6 LogDriver Mount Rootfs Secret "
            "SecurityLabelDisable SecurityLabelFileType SecurityLabelLevel SecurityLabelType "
            "Tmpfs UserNS"
        ),
        "4.6": "AutoUpdate HostName Mask Pull SecurityLabelNested Sysctl Unmask WorkingDir",
        "4.7": "DNS DNSOption DNSSearch PidsLimit ShmSize Ulimit",
        "4.8": "ContainersConfModule GIDMap GlobalArgs ReadOnlyTmpfs SubGIDMap SubUIDMap UIDMap",
        "5.0": "Entrypoint Pod StopTimeout",
        "5.1": "GroupAdd",
        "5.2": "LogOpt NetworkAlias StopSignal",
        "5.3": (
            "AddHost CgroupsMode HealthLogDestination HealthMaxLogCount HealthMaxLogSize "
            "ServiceName StartWithPod"
        ),
        "5.5": "Memory ReloadCmd ReloadSignal Retry RetryDelay",
    },
    "Pod": {
        "5.0": "ContainersConfModule GlobalArgs Network PodName PodmanArgs PublishPort Volume",
        "5.2": "NetworkAlias",
        "5.3": (
            "AddHost DNS DNSOption DNSSearch GIDMap IP IP6 RemapGid RemapUid RemapUidSize "
            "RemapUsers ServiceName SubGIDMap SubUIDMap UIDMap UserNS"
        ),
        "5.4": "ShmSize",
        "5.5": "HostName",
        "5.6": "ExitPolicy Label",
    },
    "Volume": {
        "4.4": "Copy Device Group Label Options Type User",
        "4.6": "PodmanArgs",
        "4.7": "VolumeName",
        "4.8": "ContainersConfModule Driver GlobalArgs Image",
        "5.3": "ServiceName",
    },
    "Network": {
        "4.4": "DisableDNS Driver Gateway IPAMDriver IPRange IPv6 Internal Label Options Subnet",
        "4.6": "PodmanArgs",
        "4.7": "DNS NetworkName",
        "4.8": "ContainersConfModule GlobalArgs",
        "5.3": "ServiceName",
        "5.5": "NetworkDeleteOnStop",
        "5.6": "InterfaceName",
    },
}
KEY_SINCE: dict[str, dict[str, str]] = {
    section: {key: version for version, keys in by_version.items() for key in keys.split()}
    for section, by_version in _SINCE.items()
}


def parse_version(text: str) -> Version | None:
    """ "5.4" -> (5, 4); None when it is not MAJOR.MINOR."""
    m = VERSION.fullmatch(text.strip())
    return (int(m[1]), int(m[2])) if m else None


def _key(version: str) -> Version:
    parsed = parse_version(version)
    assert parsed is not None
    return parsed


def keys_of(text: str, section: str) -> Iterable[str]:
    """The keys set in `[section]` of a unit file's text, in order."""
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            yield line.split("=", 1)[0].strip()


def unit_problems(path: str, kind: str, text: str, host: str, podman: str | None) -> list[Problem]:
    """What a quadlet unit of `kind` uses that the host's podman (None: unknown) lacks."""
    section = SECTION.get(kind)
    if section is None:
        return []
    have = _key(podman) if podman else None
    why = f"{host} has {podman} ([host] podman)"
    out = []
    if have is not None and have < _key(KIND_SINCE[kind]):
        # its keys are all as new as the unit type: one line says it
        return [Problem(f".{kind} units need podman {KIND_SINCE[kind]}; {why}", path)]
    known = KEY_SINCE[section]
    for key in dict.fromkeys(keys_of(text, section)):
        since = known.get(key)
        if since is None:
            out.append(
                Problem(
                    f"{key}= is not a [{section}] key of any podman up to {NEWEST}: "
                    "quadlet would skip the unit",
                    path,
                )
            )
        elif have is not None and have < _key(since):
            out.append(Problem(f"{key}= needs podman {since}; {why}", path))
    return out


def stack_problems(host: Any, rendered: Any, raw: Any) -> list[Problem]:
    """Every quadlet unit of a rendered stack checked against `[host] podman` (a Host, a
    Rendered, the RawStack for the key's file and line)."""
    if host.podman is not None and parse_version(host.podman) is None:
        return [raw.problem(("host", "podman"), 'must be MAJOR.MINOR, like "5.4"')]
    out = []
    for unit in rendered.units.values():
        text = rendered.files[unit.path].data.decode("utf-8", "replace")
        out += unit_problems(unit.path, unit.kind, text, host.name, host.podman)
    return out
