"""WireGuard between the hosts of a repository, generated from their stacks.

A host with a `[wireguard]` table gets two things in its bundle:

* `files/wireguard-IFACE/IFACE.conf` (mode 0600): a wg-quick configuration whose `PrivateKey`
  is a secret marker; the switcher completes it on the server into STATE/rendered/… (a
  root-only folder), so the private key never enters the bundle;
* `wireguard-IFACE.service`: a oneshot unit running `wg-quick up` / `wg-quick down` on that
  completed file, enabled at boot; containers that publish on the tunnel address (or listen
  on it from the host network) are ordered after it.

A peer given as `{ host = "vps2" }` is read from vps2's own stack: its tunnel address (its
AllowedIPs), its public key and its endpoint. Public keys are not secret: each host states its
own in `[wireguard] public_key`, which the build checks against the private key whenever the
secret can be read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterator
from typing import Any, Protocol

import attrs

from builder.base.errors import InputError, Problem, StackError
from builder.stack import unitfile
from builder.stack.load import HOST_NAME, KeyPath, RawStack
from builder.stack.model import Stack, WireGuard
from builder.stack.names import NAME, NAME_HINT, service_name
from builder.stack.ports import parse_port

INTERFACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,14}\Z")
WG_QUICK = "/usr/bin/wg-quick"
LOOPBACK = ("127.0.0.1", "[::1]")


class Repository(Protocol):
    """The other stacks of the repository (builder.render.hosts.StackIndex)."""

    def stack(self, name: str) -> Stack: ...


def unit_name(wg: WireGuard) -> str:
    """The stack-level name of the tunnel's systemd unit: `wireguard-wg0` (.service)."""
    return f"wireguard-{wg.interface}"


def unit_key(wg: WireGuard) -> str:
    return service_name(unit_name(wg), "service")


def config_path(wg: WireGuard) -> str:
    return f"files/{unit_name(wg)}/{wg.interface}.conf"


def bracketed(ip: str) -> str:
    """An address as it appears before ':PORT' (IPv6 in brackets)."""
    return f"[{ip}]" if ":" in ip else ip


def tunnel_ip(stack: Stack) -> str | None:
    """The host's tunnel address, when it has a tunnel and the address is valid."""
    wg = stack.tunnel()
    if wg is None:
        return None
    try:
        return str(ipaddress.ip_address(wg.address))
    except ValueError:
        return None  # reported by problems()


def host_cidr(ip: str) -> str:
    return f"{ip}/{128 if ':' in ip else 32}"


def public_key_ok(key: str) -> bool:
    try:
        return len(key) == 44 and len(base64.b64decode(key, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def endpoint_ok(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (
        bool(sep and host and port.isascii() and port.isdigit())
        and 0 < int(port) < 65536
        and not any(c in host for c in " /[]")
    )


# --- checks on one stack ---------------------------------------------------------------------


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    """What is wrong with `[wireguard]` and `[host] expose`, reading this stack only."""
    p = raw.problem
    wg = stack.tunnel()
    if stack.host.expose not in ("public", "wireguard"):
        yield p(("host", "expose"), 'must be "public" or "wireguard"')
    elif stack.host.expose == "wireguard" and wg is None:
        yield p(
            ("host", "expose"),
            'is "wireguard" but the host has no [wireguard] table (or it is disabled)',
        )
    if wg is None:
        return
    at: KeyPath = ("wireguard",)
    try:
        ip = ipaddress.ip_address(wg.address)
    except ValueError:
        hint = ": write the address alone (the interface gets a /32)" if "/" in wg.address else ""
        yield p((*at, "address"), f"{wg.address!r} is not an IP address{hint}")
        ip = None
    if not public_key_ok(wg.public_key):
        yield p(
            (*at, "public_key"),
            "is not a WireGuard public key (44 characters of base64, as `wg pubkey` prints)",
        )
    if not NAME.fullmatch(wg.private_key):
        yield p((*at, "private_key"), f"invalid secret name {wg.private_key!r}: {NAME_HINT}")
    if not 1 <= wg.listen_port <= 65535:
        yield p((*at, "listen_port"), "must be between 1 and 65535")
    if not INTERFACE.fullmatch(wg.interface):
        yield p(
            (*at, "interface"),
            f"{wg.interface!r}: use 1-15 lower-case letters, digits, '-' or '_' (like wg0)",
        )
    if wg.endpoint is not None and not endpoint_ok(wg.endpoint):
        yield p((*at, "endpoint"), f"{wg.endpoint!r}: write HOST:PORT, e.g. vps1.example.org:51820")
    unit = unit_key(wg)
    for table, kind in (("containers", "container"), ("pods", "pod"), ("scripts", "service")):
        for name in getattr(stack, table):
            if service_name(name, kind) == unit:
                yield p((table, name), f"makes the unit {unit}, which [wireguard] uses: rename it")
    seen_hosts: set[str] = set()
    seen_keys: set[str] = set()
    for i, peer in enumerate(wg.peers):
        here: KeyPath = (*at, "peers", i)
        if (peer.host is None) == (peer.public_key is None):
            yield p(
                here,
                'give host (another stack: { host = "vps2" }) or public_key and allowed_ips',
            )
        if peer.host is not None:
            if not HOST_NAME.fullmatch(peer.host):
                yield p((*here, "host"), f"{peer.host!r} is not a host name")
            elif peer.host == stack.host.name:
                yield p((*here, "host"), "a host is not its own peer")
            elif peer.host in seen_hosts:
                yield p((*here, "host"), f"{peer.host} is listed twice")
            seen_hosts.add(peer.host)
        if peer.public_key is not None:
            if not public_key_ok(peer.public_key):
                yield p(
                    (*here, "public_key"), "is not a WireGuard public key (44 characters of base64)"
                )
            elif peer.public_key in seen_keys or peer.public_key == wg.public_key:
                yield p((*here, "public_key"), "is used twice: each peer has its own key")
            seen_keys.add(peer.public_key)
            if not peer.allowed_ips:
                yield p(
                    here, 'a peer given by public_key needs allowed_ips (e.g. ["10.8.0.10/32"])'
                )
        for j, net in enumerate(peer.allowed_ips):
            try:
                ipaddress.ip_network(net, strict=True)
            except ValueError as exc:
                yield p((*here, "allowed_ips", j), f"{net!r} is not a network: {exc}")
        if peer.endpoint is not None and not endpoint_ok(peer.endpoint):
            yield p((*here, "endpoint"), f"{peer.endpoint!r}: write HOST:PORT")
        if peer.keepalive is not None and not 1 <= peer.keepalive <= 65535:
            yield p((*here, "keepalive"), "must be between 1 and 65535 seconds")
    if stack.host.expose == "wireguard" and ip is not None:
        yield from _exposed(stack, raw, str(ip))


def _exposed(stack: Stack, raw: RawStack, ip: str) -> Iterator[Problem]:
    """On a tunnel-only host, every published port binds the tunnel address or loopback."""
    owners: list[tuple[KeyPath, tuple[str, ...]]] = [
        (("pods", n), pod.ports) for n, pod in stack.enabled_pods().items()
    ]
    owners += [(("containers", n), c.ports) for n, c in stack.enabled_containers().items()]
    for at, ports in owners:
        for i, text in enumerate(ports):
            try:
                port = parse_port(text)
            except ValueError:
                continue  # reported by the port check
            if port.host_ip in (bracketed(ip), *LOOPBACK):
                continue
            where = "every address" if port.host_ip in ("0.0.0.0", "[::]") else port.host_ip
            suggestion = f"{bracketed(ip)}:{port.host_port}:{port.container_port}"
            if port.proto != "tcp":
                suggestion += f"/{port.proto}"
            yield raw.problem(
                (*at, "ports", i),
                f"{text!r} publishes on {where}, but {stack.host.name} is reachable only over "
                f'WireGuard ([host] expose = "wireguard"): write "{suggestion}"',
            )


# --- peers, read from the other stacks -------------------------------------------------------


@attrs.frozen
class Peer:
    comment: str
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None
    keepalive: int | None


def _lists(other: WireGuard, host: str) -> bool:
    return any(p.host == host for p in other.peers)


def resolve_peers(stack: Stack, raw: RawStack | None, repo: Repository) -> tuple[Peer, ...]:
    """The peers with everything a `host` peer leaves to its own stack filled in.

    Raises StackError with every problem: a peer host that does not exist, whose stack does not
    load (its own file:line), that has no tunnel, or that does not list this host back.
    """
    wg = stack.tunnel()
    if wg is None:
        return ()
    found: list[Problem] = []
    peers: list[Peer] = []
    addresses: dict[str, str] = {wg.address: stack.host.name}
    me = stack.host.name

    def problem(at: KeyPath, message: str) -> None:
        found.append(raw.problem(at, message) if raw else Problem(message, None, None))

    for i, peer in enumerate(wg.peers):
        at: KeyPath = ("wireguard", "peers", i)
        if peer.host is None:
            name = peer.name or f"peer {i + 1}"
            peers.append(
                Peer(
                    name,
                    peer.public_key or "",
                    peer.allowed_ips,
                    peer.endpoint,
                    peer.keepalive,
                )
            )
            continue
        try:
            other = repo.stack(peer.host)
        except StackError as exc:
            found.extend(exc.problems)
            problem((*at, "host"), f"the stack of {peer.host} has problems (listed with its file)")
            continue
        except InputError as exc:
            problem((*at, "host"), str(exc))
            continue
        theirs = other.tunnel()
        if theirs is None:
            problem((*at, "host"), f"{peer.host} has no [wireguard] table (or it is disabled)")
            continue
        if not _lists(theirs, me):
            problem(
                (*at, "host"),
                f"{peer.host} does not list {me} among its peers: add "
                f'{{ host = "{me}" }} to [wireguard] peers in {peer.host}.toml',
            )
        if theirs.address in addresses:
            problem(
                (*at, "host"),
                f"{peer.host} has the tunnel address {theirs.address}, like "
                f"{addresses[theirs.address]}: give each host its own",
            )
        addresses.setdefault(theirs.address, peer.host)
        if theirs.public_key == wg.public_key:
            problem((*at, "host"), f"{peer.host} has the same public key as {me}")
        endpoint = peer.endpoint or theirs.endpoint or f"{other.host.address}:{theirs.listen_port}"
        peers.append(
            Peer(
                peer.host,
                theirs.public_key,
                (host_cidr(theirs.address), *peer.allowed_ips),
                endpoint,
                peer.keepalive,
            )
        )
    if found:
        raise StackError(found)
    return tuple(peers)


# --- what goes into the bundle ---------------------------------------------------------------


def config_text(stack: Stack, peers: tuple[Peer, ...], marker: str) -> bytes:
    """The wg-quick configuration; `marker` stands for the private key until the server."""
    wg = stack.tunnel()
    assert wg is not None
    lines = [
        f"# WireGuard {wg.interface} of {stack.host.name}, generated by bundle from its stack.",
        f"# The private key is the secret {wg.private_key}, filled in on the server.",
        "[Interface]",
        f"Address = {host_cidr(wg.address)}",
        f"ListenPort = {wg.listen_port}",
        f"PrivateKey = {marker}",
    ]
    for peer in peers:
        lines += ["", f"# {peer.comment}", "[Peer]", f"PublicKey = {peer.public_key}"]
        lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.keepalive:
            lines.append(f"PersistentKeepalive = {peer.keepalive}")
    return ("\n".join(lines) + "\n").encode()


def unit_text(stack: Stack, conf: str) -> bytes:
    """`wireguard-IFACE.service`: the interface up from the completed configuration `conf`."""
    wg = stack.tunnel()
    assert wg is not None
    path = unitfile.quote(conf)
    return unitfile.render(
        stack.host.name,
        [
            (
                "Unit",
                [
                    ("Description", f"WireGuard {wg.interface} ({stack.host.name})"),
                    ("Wants", "network-online.target"),
                    ("After", "network-online.target"),
                ],
            ),
            (
                "Service",
                [
                    ("Type", "oneshot"),
                    ("RemainAfterExit", "yes"),
                    # an interface left over (a crash, an earlier setup by hand) would fail `up`
                    ("ExecStartPre", f"-{WG_QUICK} down {path}"),
                    ("ExecStart", f"{WG_QUICK} up {path}"),
                    ("ExecStop", f"{WG_QUICK} down {path}"),
                ],
            ),
            ("Install", [("WantedBy", "multi-user.target")]),
        ],
    )


def tunnel_users(stack: Stack, extra_ports: dict[KeyPath, tuple[str, ...]]) -> set[KeyPath]:
    """Pods and containers that need the tunnel address to exist before they start.

    Those publishing a port on it, and host-network containers that serve metrics or name the
    address in their command or environment (they listen on it themselves).
    """
    wg = stack.tunnel()
    address = tunnel_ip(stack)
    if wg is None or address is None:
        return set()
    ip = bracketed(address)
    users: set[KeyPath] = set()

    def binds(ports: tuple[str, ...]) -> bool:
        for text in ports:
            try:
                if parse_port(text).host_ip == ip:
                    return True
            except ValueError:
                continue
        return False

    for name, pod in stack.enabled_pods().items():
        if binds((*pod.ports, *extra_ports.get(("pods", name), ()))):
            users.add(("pods", name))
    for name, c in stack.enabled_containers().items():
        at: KeyPath = ("containers", name)
        if c.pod is not None:
            continue
        if binds((*c.ports, *extra_ports.get(at, ()))):
            users.add(at)
        elif "host" in c.networks:
            words = [*c.command, *c.environment.values()]
            if c.metrics is not None or any(wg.address in w for w in words):
                users.add(at)
    return users


def public_key_of(private_key: str) -> str | None:
    """The public key of a base64 private key, or None when it is not one."""
    # start-up: cryptography costs ~10 ms, paid only when a key is checked
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    try:
        raw = base64.b64decode(private_key.strip(), validate=True)
        key = X25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError):
        return None
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(public).decode()


def key_problems(stack: Stack, raw: RawStack, value: str | None) -> list[Problem]:
    """Check `public_key` against the private key secret, when its value can be read."""
    wg = stack.tunnel()
    if wg is None or value is None:
        return []
    derived = public_key_of(value)
    at: KeyPath = ("wireguard", "public_key")
    if derived is None:
        return [
            raw.problem(
                ("wireguard", "private_key"),
                f"the secret {wg.private_key} is not a WireGuard private key "
                "(make one with `wg genkey`)",
            )
        ]
    if derived != wg.public_key:
        return [
            raw.problem(
                at,
                f"does not match the secret {wg.private_key}: its public key is "
                f'"{derived}"; set public_key = "{derived}"',
            )
        ]
    return []


def view(stack: Stack) -> dict[str, Any] | None:
    """What templates see of a host's tunnel (`wireguard`, `hosts.NAME.wireguard`)."""
    wg = stack.tunnel()
    if wg is None:
        return None
    return {
        "address": wg.address,
        "public_key": wg.public_key,
        "listen_port": wg.listen_port,
        "interface": wg.interface,
        "unit": unit_key(wg),
        "peers": [p.host or p.name for p in wg.peers],
    }
