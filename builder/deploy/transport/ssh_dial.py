"""Dialing one endpoint: jump hosts or a ProxyCommand, the host key check, the login."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import attrs

from builder.base.errors import InputError
from builder.base.words import plural
from builder.deploy.transport.address import parse_jump
from builder.deploy.transport.base import (
    TransportError,
)
from builder.deploy.transport.host_key_policy import (
    verdict,
)
from builder.deploy.transport.known_hosts import KnownHosts
from builder.deploy.transport.liveness import Liveness, keep_alive
from builder.deploy.transport.options import SshOptions
from builder.deploy.transport.paramiko_import import paramiko
from builder.deploy.transport.proxy_command import ProxyCommand
from builder.deploy.transport.ssh_config import Endpoint, resolve

MAX_HOPS = 8
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
CONNECT_ERRORS = (paramiko.SSHException, EOFError, OSError)


class Dialer:
    """Builds the chain of connections to one endpoint: jump hosts first, the target last."""

    def __init__(self, config: paramiko.SSHConfig, options: SshOptions, accept_new: bool):
        self.config = config
        self.options = options
        self.accept_new = accept_new
        self.chain: list[paramiko.Transport] = []
        self._agent: paramiko.Agent | None = None
        self._agent_problem = ""

    def dial(
        self,
        ep: Endpoint,
        via: tuple[paramiko.Transport, Endpoint] | None = None,
        depth: int = 0,
    ) -> paramiko.Transport:
        if depth > MAX_HOPS:
            raise TransportError(
                f"more than {MAX_HOPS} jump hosts on the way to {ep.describe()}: "
                "check ProxyJump in your ssh config for a loop"
            )
        live = self._liveness(ep)
        timeout = live.connect
        if via is not None:
            sock: Any = _through(via, ep, timeout)
        elif ep.proxy_jump:
            hop: tuple[paramiko.Transport, Endpoint] | None = None
            for i, spec in enumerate(ep.proxy_jump):
                jump = self._jump_endpoint(spec)
                if i > 0:  # later hops are reached through the earlier ones, not their own config
                    jump = attrs.evolve(jump, proxy_jump=(), proxy_command=None)
                hop = (self.dial(jump, hop, depth + 1), jump)
            assert hop is not None  # proxy_jump is not empty: the loop dialled at least one hop
            sock = _through(hop, ep, timeout)
        elif ep.proxy_command:
            sock = ProxyCommand(ep.proxy_command)
        else:
            sock = _tcp(ep, live)
        t = paramiko.Transport(sock)
        self.chain.append(t)
        t.banner_timeout = timeout
        t.auth_timeout = timeout
        self._handshake(t, ep, timeout)
        self._authenticate(t, ep)
        t.set_keepalive(max(1, round(live.interval)))
        return t

    def _liveness(self, ep: Endpoint) -> Liveness:
        o = self.options
        return ep.limits.over(o.connect_timeout, o.keepalive, o.keepalive_count_max)

    def _jump_endpoint(self, spec: str) -> Endpoint:
        try:
            addr = parse_jump(spec)
        except InputError:
            raise TransportError(
                f"ProxyJump {spec!r} is not [USER@]HOST[:PORT]; fix it in your ssh config"
            ) from None
        source = str(self.options.config_path() or "ssh config")
        return resolve(addr.host, self.config, addr.port, addr.user, source=source)

    # ---- host key -------------------------------------------------------------------------

    def _handshake(self, t: paramiko.Transport, ep: Endpoint, timeout: float) -> None:
        _prefer_known_types(t, self._known_types(ep))
        try:
            t.start_client(timeout=timeout)
        except paramiko.ProxyCommandFailure as e:
            ended = t.sock.ended() if isinstance(t.sock, ProxyCommand) else None
            raise TransportError(
                f"cannot connect to {ep.describe()}: its ProxyCommand "
                + (f"ended ({ended})" if ended else f"failed ({e.error})")
                + "; run it by hand to see why, and check ProxyCommand in your ssh config"
            ) from None
        except CONNECT_ERRORS as e:
            ended = t.sock.ended() if isinstance(t.sock, ProxyCommand) else None
            if ended is not None:
                raise TransportError(
                    f"cannot connect to {ep.describe()}: its ProxyCommand ended ({ended}) "
                    "before the SSH greeting; run it by hand to see why, and check ProxyCommand "
                    "in your ssh config"
                ) from None
            if "banner" in str(e) and isinstance(e.__context__, EOFError):
                raise TransportError(
                    f"cannot connect to {ep.describe()}: it hung up before the SSH greeting; "
                    "sshd may be shutting this address out after failed logins "
                    "(PerSourcePenalties) or too many connections (MaxStartups): "
                    "wait a minute and retry"
                ) from None
            if "banner" in str(e):
                raise TransportError(
                    f"cannot connect to {ep.describe()}: it accepted the connection but did "
                    f"not speak SSH within {timeout:g} s; is port {ep.port} its SSH port?"
                ) from None
            raise TransportError(
                f"SSH handshake with {ep.describe()} failed ({e or type(e).__name__}); "
                "check that it runs an SSH server and try again"
            ) from None
        if not (t.is_active() and t.initial_kex_done):  # start_client's timeout ran out
            if not t.remote_version:
                raise TransportError(
                    f"cannot connect to {ep.describe()}: it accepted the connection but did "
                    f"not speak SSH within {timeout:g} s; is port {ep.port} its SSH port?"
                )
            raise TransportError(
                f"SSH handshake with {ep.describe()} did not finish within {timeout:g} s; "
                "check the server's load and the network, then try again"
            )
        self._check_host_key(t, ep)

    def _known_hosts(self, ep: Endpoint) -> KnownHosts:
        """The files OpenSSH would read for ep: SshOptions.known_hosts replaces the config's
        UserKnownHostsFile; extra_known_hosts are only read."""
        policy = ep.host_keys
        user = (self.options.known_hosts,) if self.options.known_hosts else policy.user_files
        files = [*user, *policy.global_files, *self.options.extra_known_hosts]
        return KnownHosts.load(files, user[0] if user else None)

    def _known_types(self, ep: Endpoint) -> set[str]:
        entries = self._known_hosts(ep).lookup(ep.key_name())
        return {k.plain_type() for k in entries if k.marker is None}

    def _check_host_key(self, t: paramiko.Transport, ep: Endpoint) -> None:
        key = t.get_remote_server_key()
        name, key_type, blob = ep.key_name(), key.get_name(), key.get_base64()
        known = self._known_hosts(ep)
        strict = ep.host_keys.strict
        if not verdict(known, name, key_type, blob, strict, self.accept_new, ep.describe()):
            return
        if known.user_file is None:  # UserKnownHostsFile none: accepted, as OpenSSH, unrecorded
            return
        try:
            known.add(name, key_type, blob)
        except OSError as e:
            raise TransportError(
                f"cannot add the host key of {ep.describe()} to {known.user_file}: "
                f"{e.strerror or e}; fix that file's permissions"
            ) from None

    # ---- authentication -------------------------------------------------------------------

    def _authenticate(self, t: paramiko.Transport, ep: Endpoint) -> None:
        tried: list[str] = []
        for label, key in self._keys(ep, tried):
            try:
                rest = t.auth_publickey(ep.user, key)
            except paramiko.BadAuthenticationType as e:
                raise TransportError(
                    f"{ep.describe()} does not accept keys for {ep.user} (it allows: "
                    f"{', '.join(e.allowed_types) or 'nothing'}); set up key login for that user"
                ) from None
            except paramiko.AuthenticationException:
                tried.append(label)
                if not t.is_active():  # sshd's MaxAuthTries: it hangs up after a few keys
                    raise TransportError(
                        f"{ep.address()} refused {ep.user} and hung up after "
                        f"{plural(len(tried), 'key')} ({'; '.join(tried)}); set IdentityFile and IdentitiesOnly yes "
                        "for this host in ~/.ssh/config"
                    ) from None
                continue
            except CONNECT_ERRORS as e:
                raise TransportError(
                    f"lost the connection to {ep.describe()} while logging in "
                    f"({e or type(e).__name__}); try again"
                ) from None
            if rest:
                raise TransportError(
                    f"{ep.describe()} wants more than a key for {ep.user} ({', '.join(rest)}); "
                    "key-only login is needed for deploys"
                )
            if t.is_authenticated():
                return
        offered = "; ".join(tried) if tried else "no keys at all"
        agent = self._agent_problem or ""
        raise TransportError(
            f"{ep.address()} refused login as {ep.user} (tried: {offered}{agent}); "
            "load the right key with `ssh-add KEYFILE` or set IdentityFile for this host "
            "in ~/.ssh/config"
        )

    def _keys(self, ep: Endpoint, tried: list[str]) -> list[tuple[str, paramiko.PKey]]:
        """Keys to offer, in OpenSSH's order: the agent's, then the identity files'."""
        files = list(dict.fromkeys((*ep.identity_files, *self.options.identity_files)))
        if not files:
            files = [Path(f"~/.ssh/{name}").expanduser() for name in DEFAULT_KEYS]
        explicit = bool(ep.identity_files or self.options.identity_files)
        agent_keys = self._agent_keys()
        keys: list[tuple[str, paramiko.PKey]] = []
        seen: set[str] = set()

        def offer(label: str, key: paramiko.PKey) -> None:
            if key.get_base64() not in seen:
                seen.add(key.get_base64())
                keys.append((label, key))

        if not ep.identities_only:
            for agent_key in agent_keys:
                name = agent_key.comment or agent_key.get_name()
                offer(f"agent key {name} {agent_key.fingerprint}", agent_key)
        for path in files:
            try:
                key = _load_key(path)
            except FileNotFoundError:
                if explicit:
                    tried.append(f"{path} (missing)")
                continue
            except paramiko.PasswordRequiredException:
                match = _agent_key_for(path, agent_keys)
                if match is not None:
                    offer(f"agent key for {path} {match.fingerprint}", match)
                else:
                    tried.append(f"{path} (has a passphrase and is not in the agent)")
                continue
            except (paramiko.SSHException, OSError, ValueError) as e:
                tried.append(f"{path} (unreadable: {e})")
                continue
            offer(f"{path} {key.fingerprint}", key)
        return keys

    def _agent_keys(self) -> tuple[paramiko.AgentKey, ...]:
        if not self.options.use_agent or not os.environ.get("SSH_AUTH_SOCK"):
            return ()
        if self._agent is None:
            try:
                self._agent = paramiko.Agent()
            except (paramiko.SSHException, OSError) as e:
                self._agent_problem = f"; the ssh-agent at $SSH_AUTH_SOCK failed: {e}"
                return ()
        keys: tuple[paramiko.AgentKey, ...] = self._agent.get_keys()
        if not keys and not self._agent_problem:
            self._agent_problem = "; the ssh-agent holds no keys"
        return keys

    def close_agent(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def close(self) -> None:
        for t in reversed(self.chain):
            with contextlib.suppress(*CONNECT_ERRORS):
                t.close()


def _prefer_known_types(t: paramiko.Transport, known_types: set[str]) -> None:
    """Ask for a host key type we already know, as OpenSSH does, so a known server is not
    mistaken for a changed one just because it also has another key type."""
    if not known_types:
        return
    options = t.get_security_options()
    algos = list(options.key_types)
    wanted = [a for a in algos if ("ssh-rsa" if a.startswith("rsa-sha2") else a) in known_types]
    options.key_types = [*wanted, *(a for a in algos if a not in wanted)]


def _load_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except TypeError as e:  # paramiko 5 lets cryptography's "password was not provided" out
        if "password" in str(e):
            raise paramiko.PasswordRequiredException(str(e)) from None
        raise


def _agent_key_for(
    path: Path, agent_keys: tuple[paramiko.AgentKey, ...]
) -> paramiko.AgentKey | None:
    """The agent's copy of an encrypted key file, found through its .pub file."""
    try:
        fields = Path(f"{path}.pub").read_text().split()
    except OSError:
        return None
    blob = fields[1] if len(fields) > 1 else ""
    return next((k for k in agent_keys if k.get_base64() == blob), None)


def reason_of(error: BaseException) -> str:
    """Why a connection broke. paramiko reads the kernel's keepalive timeout (ETIMEDOUT, a
    TimeoutError) as its own poll timeout, so a silent peer shows up as the end of the
    connection."""
    if isinstance(error, EOFError):
        return "the connection closed, or the server stopped answering keepalives"
    return str(error) or type(error).__name__


def _tcp(ep: Endpoint, live: Liveness) -> socket.socket:
    where = f"cannot connect to {ep.describe()}"
    timeout = live.connect
    try:
        sock = socket.create_connection((ep.hostname, ep.port), timeout=timeout)
        keep_alive(sock, live)
        return sock
    except socket.gaierror as e:
        raise TransportError(
            f"{where}: the name {ep.hostname} does not resolve ({e.strerror}); "
            "check the address in the stack or in ~/.ssh/config"
        ) from None
    except ConnectionRefusedError:
        raise TransportError(
            f"{where}: connection refused; is sshd running there and listening on port {ep.port}?"
        ) from None
    except TimeoutError:
        raise TransportError(
            f"{where}: no answer within {timeout:g} s; check the address, the port and firewalls"
        ) from None
    except OSError as e:
        raise TransportError(
            f"{where}: {e.strerror or e}; check the address and your network"
        ) from None


def _through(
    via: tuple[paramiko.Transport, Endpoint], ep: Endpoint, timeout: float
) -> paramiko.Channel:
    """A direct-tcpip channel from the jump host to ep: what `ssh -J` does."""
    jump, jump_ep = via
    try:
        return jump.open_channel(
            "direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as e:
        raise TransportError(
            f"cannot connect to {ep.describe()} through jump host {jump_ep.describe()}: "
            f"{e.text.lower()}; check the address as the jump host sees it"
        ) from None
    except CONNECT_ERRORS as e:
        raise TransportError(
            f"lost the connection to jump host {jump_ep.describe()} "
            f"({e or type(e).__name__}); try again"
        ) from None
