"""Servers that cannot be reached: each failure is one line, fast, naming host:port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import connect
from tests.harness import Target

from .sshkit import new_key, pinned_options


def failure(fn: Callable[[], object]) -> tuple[str, float]:
    t0 = time.monotonic()
    with pytest.raises(TransportError) as e:
        fn()
    message = str(e.value)
    assert "\n" not in message and e.value.exit_code == 1
    return message, time.monotonic() - t0


def test_closed_port(target: Target, tmp_path: Path) -> None:
    options = pinned_options(target, tmp_path)
    message, seconds = failure(lambda: connect(target.host, 2, "root", options=options))
    assert message == (
        f"cannot connect to root@{target.host}:2: connection refused; "
        "is sshd running there and listening on port 2?"
    )
    assert seconds < 1


def test_no_machine_at_the_address(target: Target, tmp_path: Path) -> None:
    # nothing answers ARP for .77 in the target's subnet: a timeout or "no route to host"
    absent = target.host.rsplit(".", 1)[0] + ".77"
    options = pinned_options(target, tmp_path, connect_timeout=1.5)
    message, seconds = failure(lambda: connect(absent, 22, "root", options=options))
    print(message)
    assert message.startswith(f"cannot connect to root@{absent}:22: ")
    assert "no answer within 1.5 s" in message or "No route to host" in message
    assert seconds < 5


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port on loopback that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_port_that_does_not_speak_ssh(target: Target, tmp_path: Path, silent_listener: int) -> None:
    options = pinned_options(target, tmp_path, connect_timeout=1)
    message, seconds = failure(
        lambda: connect("127.0.0.1", silent_listener, "root", options=options)
    )
    assert message == (
        f"cannot connect to root@127.0.0.1:{silent_listener}: it accepted the connection but "
        f"did not speak SSH within 1 s; is port {silent_listener} its SSH port?"
    )
    assert seconds < 4


def test_shut_out_after_failed_logins(target_factory: Callable[[], Target], tmp_path: Path) -> None:
    # OpenSSH 10 penalises an address whose connections keep failing to log in (PerSourcePenalties
    # noauth:1 min:15); once it does, the message must say so instead of blaming the port. A
    # server of its own, since the penalty outlives the test.
    fresh = target_factory()
    wrong = pinned_options(fresh, tmp_path, identity_files=(new_key(tmp_path / "wrong"),))
    messages = []
    for _ in range(40):
        message, _ = failure(lambda: connect(fresh.host, 22, "root", options=wrong))
        messages.append(message)
        if "hung up" in message:
            break
    print(f"shut out after {len(messages) - 1} failed logins")
    assert messages[0].startswith(f"{fresh.host}:22 refused login as root")
    assert messages[-1] == (
        f"cannot connect to root@{fresh.host}:22: it hung up before the SSH greeting; sshd may "
        "be shutting this address out after failed logins (PerSourcePenalties) or too many "
        "connections (MaxStartups): wait a minute and retry"
    )
