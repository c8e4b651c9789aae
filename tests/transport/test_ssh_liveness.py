"""ConnectTimeout, ServerAliveInterval and ServerAliveCountMax from ~/.ssh/config, as OpenSSH
reads them, against the real server and a network that falls silent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paramiko
import pytest

from builder.base.errors import InputError
from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import connect, resolve
from tests.harness import Target
from tests.server.test_deadlines import silent_network

from .sshkit import pinned_options


def config_for(target: Target, tmp_path: Path, name: str, lines: str) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {name}\n  HostName {target.host}\n  User root\n{lines}")
    return config


def limits(text: str) -> tuple[float | None, float | None, int | None]:
    ep = resolve("srv", paramiko.SSHConfig.from_text(f"Host srv\n{text}"), source="~/.ssh/config")
    return ep.limits.connect, ep.limits.interval, ep.limits.count_max


def test_times_are_read_as_openssh_reads_them() -> None:
    assert limits("  ConnectTimeout 7\n  ServerAliveInterval 1m30s\n  ServerAliveCountMax 5\n") == (
        7,
        90,
        5,
    )
    # 0 and none: ours, not off (the keepalive is never off)
    assert limits("  ServerAliveInterval 0\n  ConnectTimeout none\n") == (None, None, None)
    assert limits("  ServerAliveCountMax 0\n") == (None, None, 0)
    # the first value obtained wins, as in OpenSSH
    assert limits("  ServerAliveInterval 3\n  ServerAliveInterval 9\n")[1] == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "ServerAliveInterval 10x",
            "~/.ssh/config, Host srv: ServerAliveInterval '10x' is not a time; write seconds (30) or like 1m30s",
        ),
        (
            "ConnectTimeout -1",
            "~/.ssh/config, Host srv: ConnectTimeout '-1' is not a time; write seconds (30) or like 1m30s",
        ),
        (
            "ConnectTimeout 99999999999999999999",
            "~/.ssh/config, Host srv: ConnectTimeout '99999999999999999999' is longer than a week; write a shorter time",
        ),
        (
            "ServerAliveCountMax three",
            "~/.ssh/config, Host srv: ServerAliveCountMax 'three' is not a whole number; write one like 3",
        ),
        (
            "ServerAliveCountMax ３",  # a fullwidth digit
            "~/.ssh/config, Host srv: ServerAliveCountMax '３' is not a whole number; write one like 3",
        ),
    ],
)
def test_a_bad_value_is_one_line_exit_2(line: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        limits(f"  {line}\n")
    assert str(e.value) == message and e.value.exit_code == 2


def test_connect_timeout_from_the_config_wins_over_ours(target: Target, tmp_path: Path) -> None:
    absent = target.host.rsplit(".", 1)[0] + ".77"  # nothing answers there
    config = tmp_path / "ssh_config"
    config.write_text(f"Host gone\n  HostName {absent}\n  ConnectTimeout 1\n")
    options = pinned_options(target, tmp_path, config=config)  # ours: 60 s
    t0 = time.monotonic()
    with pytest.raises(TransportError) as e:
        connect("gone", 22, "root", options=options)
    assert str(e.value).startswith(f"cannot connect to root@{absent}:22: ")
    assert "no answer within 1 s" in str(e.value) or "No route to host" in str(e.value)
    assert time.monotonic() - t0 < 30


def test_server_alive_from_the_config_decides_when_a_silent_server_is_gone(
    target: Target, tmp_path: Path
) -> None:
    # 1 s × 2: gone after about 2 s of silence, far before our own 20 s
    quick = config_for(
        target, tmp_path, "quick", "  ServerAliveInterval 1\n  ServerAliveCountMax 2\n"
    )
    with connect("quick", options=pinned_options(target, tmp_path, config=quick)) as t:
        assert t.run(["true"]).ok
        with silent_network(target):
            t0 = time.monotonic()
            with pytest.raises(TransportError, match="lost the connection"):
                t.run(["sleep", "60"])
            seconds = time.monotonic() - t0
    assert seconds < 15, seconds


def test_a_longer_server_alive_outlasts_our_default(target: Target, tmp_path: Path) -> None:
    # 40 s × 2: 25 s of silence (our 20 s default would give up) and the command still ends
    patient = config_for(target, tmp_path, "patient", "  ServerAliveInterval 40\n")
    with connect("patient", options=pinned_options(target, tmp_path, config=patient)) as t:
        assert t.run(["true"]).ok
        result: list[object] = []
        runner = threading.Thread(target=lambda: result.append(_run(t, ["sleep", "30"])))
        runner.start()
        time.sleep(1)  # the command runs on the server
        with silent_network(target):
            time.sleep(25)
        runner.join(120)
    assert not runner.is_alive()
    assert result and not isinstance(result[0], BaseException), result
    assert result[0].ok  # type: ignore[attr-defined]


def _run(t: object, argv: list[str]) -> object:
    try:
        return t.run(argv)  # type: ignore[attr-defined]
    except TransportError as e:
        return e
