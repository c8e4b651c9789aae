"""One python3 on the server for a whole deploy: the conversation with LAUNCHER.

The switcher check, its install when needed, and then `have`, `receive`, `secrets-have`,
`secrets-receive`, `activate` travel as requests over one channel (builder/deploy/bootstrap.py
says how they are framed) to one remote Python, which imports the switcher once, with its
bytecode cached. Each reply is a CommandResult, as if the command had run as its own process,
so the switcher's replies are read by the same code (builder/deploy/remote.py).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import attrs

from builder.deploy.bootstrap import LAUNCHER
from builder.deploy.transport.base import Channel, CommandResult, Stdin, TransportError
from builder.deploy.transport.streams import stdin_chunks

# A bundle whose switcher has this module can be served in one session (activate/inprocess.py).
SESSION_MARKER = "activate/inprocess.py"

LENGTH = struct.Struct(">I")


def launcher_argv(state: str) -> list[str]:
    return ["python3", "-c", LAUNCHER, "session", state]


def frame(header: dict[str, Any]) -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode()
    return LENGTH.pack(len(body)) + body


@attrs.define
class Session:
    """The channel to LAUNCHER, and the folders whose switcher it serves (`serves`)."""

    channel: Channel
    switcher: str  # the installed switcher folder that answers the calls
    serves: set[str] = attrs.field(factory=set)
    ended: CommandResult | None = None  # how the remote Python ended, once it did

    def request(
        self, header: dict[str, Any], payload: Stdin, deadline: float | None
    ) -> CommandResult:
        """Send one request (and its payload in chunks) and read its reply; a Python that
        ended instead of answering gives its own exit code and stderr."""
        if self.ended is not None:
            return self.ended
        sent = 0  # the payload's bytes, as a command's stdin counts them (not the framing)
        self.channel.write(frame({**header, "payload": payload is not None}), deadline)
        if payload is not None:
            try:
                for chunk in stdin_chunks(payload):
                    self.channel.write(LENGTH.pack(len(chunk)) + chunk, deadline)
                    sent += len(chunk)
            except OSError as e:
                self.channel.close()
                raise TransportError(f"reading the data to send failed: {e}") from e
            self.channel.write(LENGTH.pack(0), deadline)
        return attrs.evolve(self._reply(deadline), bytes_sent=sent)

    def _reply(self, deadline: float | None) -> CommandResult:
        size = self.channel.read_exactly(LENGTH.size, deadline)
        head = (
            self.channel.read_exactly(LENGTH.unpack(size)[0], deadline) if len(size) == 4 else b""
        )
        try:
            header = json.loads(head)
            rc, out, err = int(header["rc"]), int(header["out"]), int(header["err"])
        except (ValueError, KeyError, TypeError):
            self.ended = self.channel.finish(deadline)  # it ended: its exit code says how
            return self.ended
        stdout = self.channel.read_exactly(out, deadline)
        stderr = self.channel.read_exactly(err, deadline)
        if len(stdout) < out or len(stderr) < err:
            self.ended = self.channel.finish(deadline)
            return self.ended
        return CommandResult(rc=rc, stdout=stdout, stderr=stderr)

    def end(self, deadline: float | None) -> None:
        """Let the remote Python go (its stdin ends); a session that broke is closed."""
        try:
            if self.ended is None:
                self.ended = self.channel.finish(deadline)
        except TransportError:
            pass
        finally:
            self.channel.close()
