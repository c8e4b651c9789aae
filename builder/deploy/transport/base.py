"""What every transport does: run one command on a server, streaming stdin, and close; or
start one and talk with it (a Channel: requests written and replies read as they come).

A transport is the only thing push and activation know about a server. The SSH one
(paramiko) and the local one (subprocess, also for `--target DIR`) implement it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import attrs

from builder.base.errors import BundleError


class Readable(Protocol):
    """A file, or a stream such as the push progress meter: read until it returns no bytes."""

    def read(self, size: int, /) -> bytes | None: ...


# Accepted as a command's stdin: nothing, bytes held in memory, or a file read in chunks.
Stdin = bytes | Readable | None


class TransportError(BundleError):
    """A server could not be reached or a command could not be run there (exit 1)."""

    exit_code = 1


class DeadlineExceeded(TransportError):
    """The command gave no exit status within its `timeout` (the server or the network hung)."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class ConnectionLost(TransportError):
    """The connection broke while a command ran (the peer went away or fell silent)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class CommandResult:
    """How a command ended: exit code, its output, and how many stdin bytes it was sent."""

    rc: int
    stdout: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    stderr: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    bytes_sent: int = 0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def stderr_line(self) -> str:
        """The last non-empty stderr line: the switcher's one-line reason on failure."""
        lines = [ln.strip() for ln in self.stderr.decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else f"exit code {self.rc} and no message"


class Channel(Protocol):
    """A command started with its stdin and stdout open, for a conversation with it.

    `deadline` is a time.monotonic() value (None: no limit). Past it, DeadlineExceeded; a
    connection that breaks, ConnectionLost. A command that stops reading or exits is not an
    error here: writes stop quietly, reads come back short at its end, and finish() says how
    it ended."""

    bytes_sent: int  # every stdin byte written so far

    def write(self, data: bytes, deadline: float | None) -> None: ...

    def read_exactly(self, size: int, deadline: float | None) -> bytes:
        """`size` bytes of stdout; fewer only when the command closed its output."""
        ...

    def finish(self, deadline: float | None) -> CommandResult:
        """Close stdin and wait for the command to exit: its code, the stdout not read yet,
        its stderr."""
        ...

    def close(self) -> None:
        """Give up on the command (it is killed where the transport can); idempotent."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Runs commands on one server; one connection for its whole life."""

    def run(
        self,
        argv: list[str],
        stdin: Stdin = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv (quoted for the remote shell) and wait for it to end.

        A file object as stdin is streamed in chunks, never read whole. A non-zero exit is a
        CommandResult, not an error; TransportError means the command could not run,
        ConnectionLost that the connection broke, DeadlineExceeded that `timeout` seconds
        passed (counted from the start: opening the channel, stdin and output included).
        """
        ...

    def open(
        self, argv: list[str], cwd: str | None = None, timeout: float | None = None
    ) -> Channel:
        """Start argv (quoted for the remote shell) and return its Channel; `timeout` bounds
        only the start."""
        ...

    def check_command(self) -> str | None:
        """A shell command the user can run to see that the server answers; None for this
        machine."""
        ...

    def describe(self) -> str:
        """Where commands run, for messages: `root@vps1.example.org:22`, `this machine`."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ClosingMixin:
    """`with transport:` closes it; shared so each transport writes only close()."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
