"""What `bundle import` could not carry over faithfully: one note per key, with what to do."""

from __future__ import annotations

import attrs

# Service keys the stack has no setting for, and what the user can do instead.
NO_EQUIVALENT = {
    "build": "build the image, push it to a registry and set image and version",
    "ulimits": "a stack sets no ulimits: podman's defaults apply (default_ulimits in the "
    "server's containers.conf)",
    "deploy": "a stack sets no resource limits or replicas: the container runs unlimited, once",
    "mem_limit": "a stack sets no memory limit: the container runs unlimited",
    "memswap_limit": "a stack sets no memory limit: the container runs unlimited",
    "mem_reservation": "a stack sets no memory reservation",
    "cpus": "a stack sets no CPU limit: the container runs unlimited",
    "cpu_shares": "a stack sets no CPU weight",
    "pids_limit": "a stack sets no pids limit: podman's default applies",
    "shm_size": "a stack sets no /dev/shm size: podman's default (64m) applies",
    "hostname": "the container's host name is its container name",
    "domainname": "the container's host name is its container name",
    "extra_hosts": "a stack adds no /etc/hosts lines: give the service a name on a network",
    "dns": "the container uses the network's resolver",
    "dns_search": "the container uses the network's resolver",
    "cap_add": "not granted: a stack adds no capabilities",
    "cap_drop": "the container keeps podman's default capabilities",
    "privileged": "not granted: a stack runs no privileged container",
    "devices": "not given: a stack passes no devices",
    "security_opt": "podman's defaults apply",
    "sysctls": "podman's defaults apply",
    "tmpfs": "not mounted: use a named volume",
    "working_dir": "the image's working directory applies; set it in the image or cd in command",
    "stop_grace_period": "podman stops it with its default timeout (10 s)",
    "stop_signal": "podman stops it with the image's stop signal",
    "logging": "the container logs to the server's journal: read it with `bundle log`",
    "init": "no init process is added: the image's entrypoint is PID 1",
    "read_only": "the container's root file system stays writable",
    "tty": "no terminal is allocated",
    "stdin_open": "no stdin is kept open",
    "network_mode": "use networks (or a pod to share one network namespace)",
    "links": "services on one network reach each other by service name; use that name",
    "external_links": "services on one network reach each other by service name; use that name",
    "expose": "",
    "platform": "the server pulls the image for its own platform",
    "pull_policy": "the switch pulls the pinned version when the server lacks it",
    "configs": "put the file in stacks/templates/ and add configs = [{ source = ..., mount = ... }]",
    "userns_mode": "podman's default user namespace applies",
    "ipc": "podman's default IPC namespace applies",
    "pid": "podman's default PID namespace applies",
    "group_add": "the container's user keeps its own groups",
    "scale": "a stack runs each container once",
}


@attrs.frozen
class Note:
    """One thing not carried over: where (a key path of the compose file), what, what to do."""

    where: str
    what: str
    todo: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" + (f"; {self.todo}" if self.todo else "")


def no_equivalent(where: str, key: str) -> Note | None:
    """The note for a service key the stack cannot express (None: nothing is lost)."""
    todo = NO_EQUIVALENT.get(key)
    if todo == "":
        return None  # e.g. expose: every port is reachable on a shared network anyway
    return Note(f"{where}.{key}", "not translated", todo or "the stack has no such setting")
