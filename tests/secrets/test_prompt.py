"""The passphrase and value prompts, typed on a real terminal (a pty), as a person would."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.secrets.conftest import PASSPHRASE, VALUES, SecretsProject

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Session:
    """`bundle ...` with a pty as its controlling terminal: answers prompts, keeps the screen."""

    pid: int
    fd: int
    screen: bytes = b""

    def read_until(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on the terminal; it shows:\n{self.screen.decode()}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the other side closed: the command ended
                    chunk = b""
                assert chunk, f"ended before {text!r}; the terminal shows:\n{self.screen.decode()}"
                self.screen += chunk

    def read_past(self, text: str) -> None:
        """Wait for `text`, then forget the screen up to it: what came after stays to be read."""
        self.read_until(text)
        self.screen = self.screen.split(text.encode(), 1)[1]

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def finish(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.screen += chunk
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"still running; the terminal shows:\n{self.screen.decode()}")

    @property
    def text(self) -> str:
        return self.screen.decode().replace("\r\n", "\n")


def on_terminal(project: SecretsProject, *args: str) -> Session:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(project.root),
        "NO_COLOR": "1",
        "TERM": "dumb",
        "BUNDLE_SECRETS_KDF_LOG2N": "10",
        "PYTHONPATH": str(REPO),
    }
    pid, fd = pty.fork()  # the child gets the pty as stdin/stdout/stderr and controlling tty
    if pid == 0:
        os.chdir(project.root)
        os.execve(sys.executable, [sys.executable, "-m", "builder.cli", *args], env)
    return Session(pid, fd)


def set_first_secret(project: SecretsProject, repeated: str) -> Session:
    """`secrets set` on a project with no secrets file yet: the value, then a new passphrase."""
    s = on_terminal(project, "secrets", "set", "web1", "db_password")
    s.read_until("Value for db_password (not shown): ")
    s.type(VALUES["db_password"])
    s.read_until("New passphrase for stacks/secrets/web1.enc: ")
    s.type(PASSPHRASE)
    s.read_until("Repeat the passphrase for stacks/secrets/web1.enc: ")
    s.type(repeated)
    return s


def test_first_secret_asks_for_a_new_passphrase_twice_and_the_value_hidden(
    sproject: SecretsProject,
) -> None:
    s = set_first_secret(sproject, repeated=PASSPHRASE)
    assert s.finish() == 0
    assert "web1: db_password added in stacks/secrets/web1.enc" in s.text
    assert PASSPHRASE not in s.text and VALUES["db_password"] not in s.text  # nothing echoed
    # the same passphrase, from the environment this time, opens what the prompt wrote
    assert sproject.ok("secrets", "list", "web1").stdout == "db_password  stacks/secrets/web1.enc\n"


def test_a_known_file_asks_for_its_passphrase_three_times_at_most(sproject: SecretsProject) -> None:
    sproject.set("web1", "db_password", VALUES["db_password"])
    s = on_terminal(sproject, "secrets", "list", "web1")
    s.read_until("Passphrase for stacks/secrets/web1.enc: ")
    s.type(PASSPHRASE)
    assert s.finish() == 0
    assert s.text.endswith("db_password  stacks/secrets/web1.enc\n")

    s = on_terminal(sproject, "secrets", "list", "web1")
    s.read_until("Passphrase for stacks/secrets/web1.enc: ")
    s.type("not the passphrase")
    # the next prompt may come in the same read as the refusal: it must not be thrown away
    s.read_past("stacks/secrets/web1.enc: wrong passphrase, try again")
    s.read_until("Passphrase for stacks/secrets/web1.enc: ")  # typed earlier, it would be lost
    s.type(PASSPHRASE)  # a typo is forgiven, like sudo
    assert s.finish() == 0
    assert s.text.endswith("db_password  stacks/secrets/web1.enc\n")

    s = on_terminal(sproject, "secrets", "list", "web1")
    for _ in range(3):
        s.read_past("Passphrase for stacks/secrets/web1.enc: ")
        s.type("not the passphrase")
    assert s.finish() == 2
    last = s.text.rstrip("\n").split("\n")[-1]
    assert last == "error: stacks/secrets/web1.enc: wrong passphrase (3 attempts)"
    assert "Traceback" not in s.text


def test_two_different_new_passphrases_write_nothing(sproject: SecretsProject) -> None:
    s = set_first_secret(sproject, repeated=PASSPHRASE + " typo")
    assert s.finish() == 2
    assert s.text.rstrip("\n").endswith(
        "error: stacks/secrets/web1.enc: the two passphrases differ; nothing was written"
    )
    assert not (sproject.stacks / "secrets/web1.enc").exists()
