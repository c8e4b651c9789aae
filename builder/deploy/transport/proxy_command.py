"""A ProxyCommand whose end is seen at once.

paramiko's own `ProxyCommand.recv` keeps polling a command that has exited until its timeout
runs out, so a ProxyCommand that dies (a jump host refusing us, a typo in the command) looked
like a server that "did not speak SSH" a minute later. This one returns b"" at end of file, which
paramiko reads as a closed connection, and says how the command ended.
"""

from __future__ import annotations

import os
import select
import subprocess

from builder.deploy.transport.paramiko_import import paramiko


class ProxyCommand(paramiko.ProxyCommand):
    def recv(self, size: int) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None  # paramiko starts the command with stdout=PIPE
        try:
            ready, _, _ = select.select([stdout], [], [], self.timeout)
        except (OSError, ValueError) as e:  # ValueError: the pipe was closed under us
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), str(e)) from None
        if not ready:
            raise TimeoutError  # what a socket raises when its timeout passes
        try:
            return os.read(stdout.fileno(), size)  # b"" once the command has exited
        except OSError as e:
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), e.strerror or str(e)) from None

    def ended(self) -> str | None:
        """How the command ended ("exit status 255"), or None while it runs."""
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None
        return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
