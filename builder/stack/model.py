"""The stack model: what a host runs. Frozen attrs classes; builder/stack/structure.py fills them."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Host:
    """The machine a stack is deployed to."""

    name: str
    address: str
    ssh_user: str = "root"
    ssh_port: int = 22
    # run every unit under ssh_user's own systemd and podman (docs/rootless.md)
    rootless: bool = False
    state_dir: str = attrs.field(
        default=attrs.Factory(
            lambda h: (
                f"/home/{h.ssh_user}/.local/state/bundle" if h.rootless else "/var/lib/bundle"
            ),
            takes_self=True,
        )
    )
    tags: tuple[str, ...] = ()
    # "public", or "wireguard": every published port must bind the tunnel address (or loopback)
    expose: str = "public"
    # the health gate and the dead-man confirmation (docs/reliability.md), in seconds
    health_timeout: int = 60
    health_settle: int = 2
    confirm_timeout: int = 30
    # seconds a look-up on the server may take; other steps scale from it (builder/deploy/deadlines.py)
    command_timeout: int = 30
    # builds take each image's digest from stacks/lock/HOST.json and refuse one it lacks
    lock: bool = False
    # MAJOR.MINOR of the server's podman: builds refuse quadlet keys it lacks (render/podman_keys.py)
    podman: str | None = None

    @property
    def boot_target(self) -> str:
        """What starts the units at boot: the system's, or the rootless user's manager."""
        return "default.target" if self.rootless else "multi-user.target"


@attrs.frozen
class ConfigFile:
    """A file shipped in the bundle and mounted read-only into a container.

    Exactly one of `template` (rendered with Jinja2) or `source` (copied as is), both relative
    to the stacks' templates folder. `path` is where it lives under the service's folder in the
    bundle (default: the template's file name without `.j2`); `mount` is where the container
    sees it.
    """

    mount: str
    template: str | None = None
    source: str | None = None
    path: str | None = None
    mode: str = "0644"


@attrs.frozen
class SecretRef:
    """A secret given to a container by name: as an environment variable or as a file."""

    name: str
    env: str | None = None
    file: str | None = None


@attrs.frozen
class HealthCheck:
    """podman's own health check, run inside the container."""

    cmd: str
    interval: str = "30s"
    timeout: str = "10s"
    retries: int = 3
    start_period: str = "0s"


@attrs.frozen
class Check:
    """A deploy-time check run by the switcher on the server after activation.

    Exactly one of `http` (a URL; the answer must have `status` and contain `body`), `tcp`
    (HOST:PORT accepts a connection) or `command` (a shell command exits 0).
    """

    http: str | None = None
    tcp: str | None = None
    command: str | None = None
    status: int | None = None
    body: str | None = None
    timeout: int = 5


@attrs.frozen
class Metrics:
    """Where a container serves Prometheus metrics: once declared, scraped over WireGuard.

    `port` is the port the endpoint answers on, inside the container and on the host's tunnel
    address alike: the build publishes TUNNEL_IP:PORT:PORT for it (on its pod when it has one),
    except on the host network, where the process itself must listen on the tunnel address.
    """

    port: int
    path: str = "/metrics"


@attrs.frozen
class Reload:
    """How a running container takes a new version of its config files without a restart:
    exactly one of `signal` (sent to its main process) or `command` (run inside it)."""

    signal: str | None = None
    command: tuple[str, ...] = ()


@attrs.frozen
class Container:
    """One container, run by a quadlet `.container` unit named after it."""

    image: str
    version: str | None = None
    digest: str | None = None
    enabled: bool = True
    description: str | None = None
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    user: str | None = None
    environment: dict[str, str] = attrs.field(factory=dict)
    secrets: tuple[SecretRef, ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    configs: tuple[ConfigFile, ...] = ()
    labels: dict[str, str] = attrs.field(factory=dict)
    auto_update: bool = False
    depends_on: tuple[str, ...] = ()
    pod: str | None = None
    networks: tuple[str, ...] = ()
    health: HealthCheck | None = None
    stateful: bool = False
    restart: str = "always"
    metrics: Metrics | None = None
    checks: tuple[Check, ...] = ()
    dump: str | None = None  # stateful: run in the container, stdout is the snapshot
    restore: str | None = None  # gets a dump on stdin with `bundle rollback --restore-data`
    reload: Reload | None = None  # a change of only its configs reloads it instead of a restart


@attrs.frozen
class Pod:
    """A podman pod: containers sharing one network namespace; it publishes their ports."""

    enabled: bool = True
    description: str | None = None
    ports: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()


@attrs.frozen
class Volume:
    """A named podman volume, created by a quadlet `.volume` unit."""

    labels: dict[str, str] = attrs.field(factory=dict)
    driver: str | None = None
    options: str | None = None
    device: str | None = None
    type: str | None = None


@attrs.frozen
class Network:
    """A podman network, created by a quadlet `.network` unit."""

    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False
    ipv6: bool = False
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Script:
    """A script run by a oneshot systemd service, on a timer when `on_calendar` is set.

    Exactly one of `template` (rendered), `source` (copied) or `run` (inline shell).
    """

    template: str | None = None
    source: str | None = None
    run: str | None = None
    enabled: bool = True
    description: str | None = None
    on_calendar: str | None = None
    randomized_delay: str | None = None
    environment: dict[str, str] = attrs.field(factory=dict)
    timeout: str = "2h"
    on_activation: bool = False  # run when activated and at boot; stays active
    stop: str | None = None  # inline shell run when it is stopped (undo what it set up)


@attrs.frozen
class WireGuardPeer:
    """A peer of the tunnel: another host of the repository (`host`: its address, public key
    and endpoint come from its own stack), or any other machine (`public_key` + `allowed_ips`)."""

    host: str | None = None
    name: str | None = None
    public_key: str | None = None
    allowed_ips: tuple[str, ...] = ()
    endpoint: str | None = None
    keepalive: int | None = None


@attrs.frozen
class WireGuard:
    """The host's WireGuard interface, brought up by `wireguard-INTERFACE.service` (wg-quick).

    The private key is a secret (by name); the public key is not, so peers read it from here.
    """

    address: str
    public_key: str
    enabled: bool = True
    private_key: str = "wireguard_private_key"
    listen_port: int = 51820
    interface: str = "wg0"
    endpoint: str | None = None  # how peers reach this host; default host.address:listen_port
    peers: tuple[WireGuardPeer, ...] = ()


@attrs.frozen
class BackupKeep:
    """How many snapshots of each volume `forget`/retention keeps (0: that rule is off)."""

    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0


@attrs.frozen
class Backup:
    """Backups of the stateful containers' named volumes, by a timer: builder/render/features/backup.py.

    Credentials are secret names (docs/secrets.md), never values; the healthcheck URL may be
    either a plain `healthcheck_url` or a secret (`healthcheck_url_secret`).
    """

    tool: str
    repository: str
    password_secret: str
    enabled: bool = True
    on_calendar: str = "daily"
    randomized_delay: str | None = None
    timeout: str = "6h"
    method: str = "stop"
    s3_access_key_secret: str | None = None
    s3_secret_key_secret: str | None = None
    s3_region: str | None = None
    healthcheck_url: str | None = None
    healthcheck_url_secret: str | None = None
    keep: BackupKeep | None = None
    object_lock: str | None = None  # kopia on S3: COMPLIANCE retention, e.g. "30d"
    snapshot_size: str = "10%ORIGIN"  # LVM snapshots (method = "snapshot")
    metrics_file: str = "/var/lib/node-exporter/backup.prom"  # node-exporter textfile dir


@attrs.frozen
class SecretsConfig:
    """Who the host's age secrets are encrypted to (docs/secrets.md)."""

    recipients: tuple[str, ...] = ()
    host_key: bool = False  # also encrypt to the host's pinned ssh-ed25519 host key


@attrs.frozen
class Notify:
    """Messages from the server on switches, rollbacks and failed units:
    builder/render/features/notify.py. Each URL may be given in clear or as a secret's name."""

    webhook: str | None = None
    webhook_secret: str | None = None
    ntfy: str | None = None
    ntfy_secret: str | None = None
    ntfy_token_secret: str | None = None
    healthchecks: str | None = None
    healthchecks_secret: str | None = None
    events: tuple[str, ...] = ("switched", "rolled back", "rollback failed", "failed units")


@attrs.frozen
class Hooks:
    """Shell commands the switcher runs on the server inside the switch lock (docs/operations.md):
    `pre` before anything changes (a failure stops the switch), `post` once the new generation
    passed its health gate (a failure rolls back). Each may take `timeout` seconds."""

    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    timeout: int = 300


@attrs.frozen
class Stack:
    """Everything one host runs, after shared files and variants are merged."""

    host: Host
    vars: dict[str, Any] = attrs.field(factory=dict)
    containers: dict[str, Container] = attrs.field(factory=dict)
    pods: dict[str, Pod] = attrs.field(factory=dict)
    volumes: dict[str, Volume] = attrs.field(factory=dict)
    networks: dict[str, Network] = attrs.field(factory=dict)
    scripts: dict[str, Script] = attrs.field(factory=dict)
    backup: Backup | None = None
    wireguard: WireGuard | None = None
    secrets: SecretsConfig | None = None
    notify: Notify | None = None
    hooks: Hooks | None = None

    def enabled_containers(self) -> dict[str, Container]:
        return {n: c for n, c in self.containers.items() if c.enabled}

    def enabled_pods(self) -> dict[str, Pod]:
        return {n: p for n, p in self.pods.items() if p.enabled}

    def enabled_scripts(self) -> dict[str, Script]:
        return {n: s for n, s in self.scripts.items() if s.enabled}

    def tunnel(self) -> WireGuard | None:
        """The WireGuard interface, unless there is none or it is turned off."""
        return self.wireguard if self.wireguard is not None and self.wireguard.enabled else None
