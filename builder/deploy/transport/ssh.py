"""The SSH transport; with ssh_config.py and ssh_dial.py, the only modules that import paramiko.

connect() resolves a host through ~/.ssh/config (Host, HostName, Port, User, IdentityFile,
IdentitiesOnly, ProxyJump, ProxyCommand, HostKeyAlias, ConnectTimeout, ServerAliveInterval,
ServerAliveCountMax), opens one connection
(through jump hosts if asked), checks the host key against known_hosts and logs in with the
ssh-agent's keys and identity files. Every failure is a TransportError with one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import time

from builder.deploy.transport.base import (
    ClosingMixin,
    CommandResult,
    ConnectionLost,
    DeadlineExceeded,
    Stdin,
)
from builder.deploy.transport.options import SshOptions
from builder.deploy.transport.paramiko_import import paramiko
from builder.deploy.transport.ssh_config import Endpoint, load_config, resolve
from builder.deploy.transport.ssh_dial import CONNECT_ERRORS, Dialer, reason_of
from builder.deploy.transport.streams import CHUNK, Worker, drain, feed, receive_exactly, send_all

# paramiko logs every failure itself; our one-line TransportError already says it
logging.getLogger("paramiko").addHandler(logging.NullHandler())

WINDOW = 8 * 1024 * 1024  # a large receive window keeps big stdout flowing without stalls
POLL = 0.2  # how often a waiting channel looks at its deadline and the connection


class SshTransport(ClosingMixin):
    """One authenticated SSH connection (plus the jump hosts it goes through)."""

    def __init__(self, endpoint: Endpoint, chain: list[paramiko.Transport]) -> None:
        self.endpoint = endpoint
        self._chain = chain
        self._transport = chain[-1]

    def describe(self) -> str:
        return self.endpoint.describe()

    def check_command(self) -> str | None:
        ep = self.endpoint
        port = "" if ep.port == 22 else f"-p {ep.port} "
        return f"ssh {port}{shlex.quote(ep.user)}@{shlex.quote(ep.name)} true"

    def run(
        self,
        argv: list[str],
        stdin: Stdin = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        command = shlex.join(argv)
        if cwd is not None:
            command = f"cd {shlex.quote(cwd)} && {command}"
        deadline = None if timeout is None else time.monotonic() + timeout
        chan = self._start(command, deadline, timeout)
        try:
            writer = Worker("ssh-stdin", lambda: feed(stdin, chan.sendall, chan.shutdown_write))
            out = Worker("ssh-stdout", lambda: drain(chan.recv))
            err = Worker("ssh-stderr", lambda: drain(chan.recv_stderr))
            if not self._wait_for_exit(chan, writer, command, deadline):
                raise self._late(command, timeout)
            try:
                stdout, stderr, sent = out.result(), err.result(), writer.result()
            except CONNECT_ERRORS as e:  # the connection broke while the command ran
                raise self._lost(command, e) from None
        finally:
            with contextlib.suppress(*CONNECT_ERRORS):  # a lost connection cannot close it
                chan.close()
        if chan.exit_status == -1 and not self.is_active():
            raise self._lost(command, EOFError("the connection closed"))
        return CommandResult(rc=chan.exit_status, stdout=stdout, stderr=stderr, bytes_sent=sent)

    def open(
        self, argv: list[str], cwd: str | None = None, timeout: float | None = None
    ) -> SshChannel:
        command = shlex.join(argv)
        if cwd is not None:
            command = f"cd {shlex.quote(cwd)} && {command}"
        deadline = None if timeout is None else time.monotonic() + timeout
        return SshChannel(self, self._start(command, deadline, timeout), command)

    def _start(
        self, command: str, deadline: float | None, timeout: float | None
    ) -> paramiko.Channel:
        """Open a channel and start the command, within the deadline: paramiko would wait an
        hour for the channel and forever for sshd's answer to `exec`."""
        try:
            chan = self._transport.open_session(window_size=WINDOW, timeout=timeout)
        except CONNECT_ERRORS as e:
            if deadline is not None and time.monotonic() >= deadline:
                raise self._late(command, timeout) from None
            raise self._lost(command, e) from None
        started = Worker("ssh-exec", lambda: chan.exec_command(command))
        try:
            while not started.wait(0.2):
                if not self._alive():
                    raise self._lost(command, EOFError("the connection closed"))
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._late(command, timeout)
            started.result()
        except CONNECT_ERRORS as e:
            with contextlib.suppress(*CONNECT_ERRORS):
                chan.close()
            raise self._lost(command, e) from None
        except BaseException:
            with contextlib.suppress(*CONNECT_ERRORS):
                chan.close()
            raise
        return chan

    def _wait_for_exit(
        self, chan: paramiko.Channel, writer: Worker[int], command: str, deadline: float | None
    ) -> bool:
        """Wait for the command's exit status (False: the deadline passed); a connection that
        is gone raises at once instead of when paramiko next writes (its keepalive)."""
        while not chan.status_event.wait(0.2):
            broken = writer.error()  # sending its input failed: the transport broke
            if broken is not None or not self._alive():
                raise self._lost(command, broken or EOFError("the connection closed"))
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def _alive(self) -> bool:
        if not self._transport.is_active():
            return False
        # paramiko reads a ProxyCommand that exited as "no data yet", never as the end
        sock = self._transport.sock
        if not isinstance(sock, paramiko.ProxyCommand):
            return True
        try:  # WNOWAIT: look without reaping it; paramiko still signals that pid on close
            ended = os.waitid(os.P_PID, sock.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return ended is None

    def is_active(self) -> bool:
        return bool(self._transport.is_active())

    def _lost(self, command: str, error: BaseException) -> ConnectionLost:
        reason = reason_of(error)
        return ConnectionLost(
            f"lost the connection to {self.describe()} while running `{command}` ({reason}); "
            "check the server and the network, then run again",
            reason,
        )

    def _late(self, command: str, timeout: float | None) -> DeadlineExceeded:
        seconds = timeout or 0.0
        return DeadlineExceeded(
            f"`{command}` on {self.describe()} did not finish within {seconds:g} s; "
            "stopped waiting for it (it may still be running there)",
            seconds,
        )

    def close(self) -> None:
        for t in reversed(self._chain):
            # a connection that is already gone (its ProxyCommand exited) cannot say goodbye
            with contextlib.suppress(*CONNECT_ERRORS):
                t.close()

    def __repr__(self) -> str:
        return f"<SshTransport {self.describe()}>"


class SshChannel:
    """One command's session channel; every wait is cut into POLL slices that look at the
    deadline and at the connection, like SshTransport.run."""

    def __init__(self, owner: SshTransport, chan: paramiko.Channel, command: str) -> None:
        self._owner, self._chan, self._command = owner, chan, command
        chan.settimeout(POLL)
        self._err = Worker("ssh-stderr", lambda: _drain_stderr(chan))
        self._stdin_open = True
        self.bytes_sent = 0

    def _check(self, deadline: float | None) -> None:
        if not self._owner._alive():
            self.close()
            raise self._owner._lost(self._command, EOFError("the connection closed"))
        if deadline is not None and time.monotonic() >= deadline:
            self.close()
            raise self._owner._late(self._command, 0.0)

    def write(self, data: bytes, deadline: float | None) -> None:
        def send_some(chunk: memoryview) -> int | None:
            if not self._stdin_open:
                return 0
            self._check(deadline)
            try:
                n = self._chan.send(bytes(chunk))
            except TimeoutError:  # no window: the command does not read yet
                return None
            except CONNECT_ERRORS as e:
                self.close()
                raise self._owner._lost(self._command, e) from None
            if n == 0:  # it closed its stdin (exited): finish() tells how it ended
                self._stdin_open = False
            return n

        self.bytes_sent += send_all(data, send_some)

    def read_exactly(self, size: int, deadline: float | None) -> bytes:
        def receive_some(n: int) -> bytes | None:
            try:
                return self._chan.recv(n)
            except TimeoutError:
                self._check(deadline)
                return None
            except CONNECT_ERRORS as e:
                self.close()
                raise self._owner._lost(self._command, e) from None

        return receive_exactly(size, receive_some)

    def finish(self, deadline: float | None) -> CommandResult:
        if self._stdin_open:
            self._stdin_open = False
            with contextlib.suppress(*CONNECT_ERRORS):
                self._chan.shutdown_write()
        rest = drain(lambda n: self.read_exactly(n, deadline))
        while not self._chan.status_event.wait(POLL):
            self._check(deadline)
        stderr = self._err.result()
        self.close()
        if self._chan.exit_status == -1 and not self._owner.is_active():
            raise self._owner._lost(self._command, EOFError("the connection closed"))
        return CommandResult(self._chan.exit_status, rest, stderr, self.bytes_sent)

    def close(self) -> None:
        self._stdin_open = False
        with contextlib.suppress(*CONNECT_ERRORS):
            self._chan.close()


def _drain_stderr(chan: paramiko.Channel) -> bytes:
    """All of stderr until its end (or the channel closes); the channel's POLL timeout only
    means nothing came yet."""
    parts = []
    while True:
        try:
            chunk = chan.recv_stderr(CHUNK)
        except TimeoutError:
            if chan.closed:
                break
            continue
        except CONNECT_ERRORS:
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def connect(
    host: str,
    port: int | None = None,
    user: str | None = None,
    *,
    accept_new: bool = False,
    options: SshOptions | None = None,
    default_port: int = 22,
    default_user: str | None = None,
) -> SshTransport:
    """Open an authenticated connection to `host` (an address or an ssh config alias).

    port/user given here win over the ssh config; default_port/default_user apply when
    neither says (the user defaults to the local one, like OpenSSH).
    """
    options = options or SshOptions()
    config = load_config(options)
    source = str(options.config_path() or "ssh config")
    endpoint = resolve(host, config, port, user, default_port, default_user, source)
    dialer = Dialer(config, options, accept_new)
    try:
        dialer.dial(endpoint)
    except BaseException:
        dialer.close()
        raise
    finally:
        dialer.close_agent()
    return SshTransport(endpoint, dialer.chain)
