"""~/.ssh/config: aliases, precedence, ProxyJump and ProxyCommand, against the real server."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError, open_transport
from builder.deploy.transport.ssh import connect
from tests.harness import Target

from .sshkit import host_key_lines, pinned_options

# connections through ProxyCommand and jump hosts all come from 127.0.0.1 or the gateway; one
# dropped on purpose must not get the next test's connection shut out by PerSourcePenalties
pytestmark = pytest.mark.usefixtures("forgiving_sshd")


def write_config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(text)
    return config


def remote_peer(t: object) -> str:
    """The client address sshd saw for this session (first field of $SSH_CONNECTION)."""
    r = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"'])  # type: ignore[attr-defined]
    assert r.ok, r.stderr
    return r.stdout.split()[0].decode()


def test_alias_from_env_config(
    target: Target, tmp_path: Path, hermetic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IdentityFile with ~ is expanded against HOME, as OpenSSH does
    keys = hermetic_home / "keys"
    keys.mkdir()
    (keys / "deploy").write_bytes(target.key_path.read_bytes())
    (keys / "deploy").chmod(0o600)
    config = write_config(
        tmp_path,
        f"Host vps-test\n  HostName {target.host}\n  Port 22\n  User root\n"
        "  IdentityFile ~/keys/deploy\n",
    )
    monkeypatch.setenv("BUNDLE_SSH_CONFIG", str(config))
    options = pinned_options(target, tmp_path, config=None, identity_files=())
    with connect("vps-test", options=options) as t:
        assert t.describe() == f"root@{target.host}:22"
        assert t.run(["whoami"]).stdout == b"root\n"


def test_explicit_port_and_user_win_over_config(target: Target, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"Host srv\n  HostName {target.host}\n  Port 2\n  User nobody\n"
    )
    options = pinned_options(target, tmp_path, config=config)
    with pytest.raises(TransportError, match=rf"root@{target.host}:2: connection refused"):
        connect("srv", user="root", options=options)
    with connect("srv", port=22, user="root", options=options) as t:
        assert t.run(["whoami"]).stdout == b"root\n"


def test_config_wins_over_the_stack_values(target: Target, tmp_path: Path) -> None:
    config = write_config(tmp_path, f"Host srv\n  HostName {target.host}\n  Port 22\n  User root\n")
    options = pinned_options(target, tmp_path, config=config)
    # the stack says admin@srv:2222; the ssh config's User and Port decide
    transport, root = open_transport(None, "srv", "admin", 2222, ssh_options=options)
    with transport:
        assert (root, transport.describe()) == ("/", f"root@{target.host}:22")


def test_stack_values_apply_where_the_config_is_silent(target: Target, tmp_path: Path) -> None:
    config = write_config(tmp_path, f"Host srv\n  HostName {target.host}\n")
    options = pinned_options(target, tmp_path, config=config)
    with pytest.raises(TransportError, match=rf"^cannot connect to admin@{target.host}:2222: "):
        open_transport(None, "srv", "admin", 2222, ssh_options=options)


def test_missing_config_file(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUNDLE_SSH_CONFIG", str(tmp_path / "nope"))
    with pytest.raises(TransportError, match=r"ssh config .*nope does not exist"):
        connect(target.host, options=pinned_options(target, tmp_path, config=None))


def test_open_transport_ssh_url(target: Target, tmp_path: Path) -> None:
    options = pinned_options(target, tmp_path)
    transport, root = open_transport(
        f"ssh://root@{target.host}:22", "stack-address.invalid", "admin", 2200, ssh_options=options
    )
    with transport:
        assert root == "/"
        assert transport.describe() == f"root@{target.host}:22"
        assert transport.run(["id", "-u"]).stdout == b"0\n"


def test_open_transport_falls_back_to_the_stack_address(target: Target, tmp_path: Path) -> None:
    transport, root = open_transport(
        None, target.host, "root", 22, ssh_options=pinned_options(target, tmp_path)
    )
    with transport:
        assert (root, transport.run(["true"]).rc) == ("/", 0)


# ---- jump hosts ---------------------------------------------------------------------------
# Targets live in separate network namespaces without routes to each other (see
# test_second_target_is_not_routable_from_the_first), so a real jump goes through the target
# to its own loopback: the final sshd sees the connection come from 127.0.0.1.


def jump_setup(target: Target, tmp_path: Path, inner: str) -> tuple[Path, Path]:
    known = tmp_path / "known_hosts"
    known.write_text(host_key_lines(target, "127.0.0.1"))
    config = write_config(
        tmp_path,
        f"Host jump\n  HostName {target.host}\n  User root\n  IdentityFile {target.key_path}\n"
        f"Host inner\n  HostName 127.0.0.1\n  User root\n  IdentityFile {target.key_path}\n"
        f"{inner}",
    )
    return config, known


def test_proxy_jump(target: Target, tmp_path: Path) -> None:
    config, known = jump_setup(target, tmp_path, "  ProxyJump jump\n")
    options = pinned_options(target, tmp_path, config=config, known_hosts=known, identity_files=())
    with connect("inner", options=options) as t:
        assert t.describe() == "root@127.0.0.1:22"
        assert remote_peer(t) == "127.0.0.1"
        # big streams work through the jump too
        r = t.run(["wc", "-c"], stdin=b"j" * (8 * 1024 * 1024))
        assert (r.stdout.strip(), r.bytes_sent) == (b"8388608", 8 * 1024 * 1024)


def test_proxy_jump_chain_and_inline_spec(target: Target, tmp_path: Path) -> None:
    # two hops: host -> target -> target's 127.0.0.1 -> target's 127.0.0.1 again
    config, known = jump_setup(
        target, tmp_path, f"  ProxyJump root@{target.host}:22,ssh://root@127.0.0.1\n"
    )
    options = pinned_options(target, tmp_path, config=config, known_hosts=known)
    with connect("inner", options=options) as t:
        assert remote_peer(t) == "127.0.0.1"
        sessions = t.run(["sh", "-c", "ss -Htn state established '( sport = :22 )' | wc -l"])
        assert int(sessions.stdout) >= 3  # three SSH connections end at this sshd


def test_proxy_jump_host_cannot_reach_the_target(target: Target, tmp_path: Path) -> None:
    config, known = jump_setup(target, tmp_path, "  ProxyJump jump\n  Port 1\n")
    options = pinned_options(target, tmp_path, config=config, known_hosts=known)
    with pytest.raises(TransportError) as e:
        connect("inner", options=options)
    assert str(e.value) == (
        f"cannot connect to root@127.0.0.1:1 through jump host root@{target.host}:22: "
        "connect failed; check the address as the jump host sees it"
    )


def test_second_target_is_not_routable_from_the_first(
    target: Target, target_factory: object, tmp_path: Path
) -> None:
    other = target_factory()  # type: ignore[operator]
    config = write_config(
        tmp_path,
        f"Host jump\n  HostName {target.host}\n  User root\n  IdentityFile {target.key_path}\n"
        f"Host other\n  HostName {other.host}\n  User root\n  IdentityFile {other.key_path}\n"
        "  ProxyJump jump\n",
    )
    options = pinned_options(
        target,
        tmp_path,
        config=config,
        extra_known_hosts=(target.known_hosts_path, other.known_hosts_path),
    )
    with pytest.raises(
        TransportError, match=rf"root@{other.host}:22 through jump host root@{target.host}:22"
    ):
        connect("other", options=options)


def test_proxy_command(target: Target, tmp_path: Path) -> None:
    # OpenSSH's own client as the ProxyCommand: `ssh -W` to the target's loopback
    ssh_w = shlex.join(target.ssh_argv()[:-1]) + f" -W %h:%p root@{target.host}"
    known = tmp_path / "known_hosts"
    known.write_text(host_key_lines(target, "127.0.0.1"))
    config = write_config(
        tmp_path,
        f"Host via-command\n  HostName 127.0.0.1\n  User root\n  ProxyCommand {ssh_w}\n",
    )
    options = pinned_options(target, tmp_path, config=config, known_hosts=known)
    with connect("via-command", options=options) as t:
        assert remote_peer(t) == "127.0.0.1"
        assert t.run(["whoami"]).stdout == b"root\n"


def test_include(target: Target, tmp_path: Path, hermetic_home: Path) -> None:
    # relative Include names are under ~/.ssh; globs are sorted; the first value wins
    conf_d = hermetic_home / ".ssh/conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "10-vps.conf").write_text(f"Host vps-inc\n  HostName {target.host}\n  User root\n")
    (conf_d / "20-late.conf").write_text("Host vps-inc\n  User nobody\n")
    config = write_config(tmp_path, "Include conf.d/*.conf\n")
    with connect("vps-inc", options=pinned_options(target, tmp_path, config=config)) as t:
        assert t.describe() == f"root@{target.host}:22"


def test_host_key_alias_is_looked_up_as_written() -> None:
    # as OpenSSH does: the alias replaces host and port (a proxy on a local port keeps the
    # server's own known_hosts line)
    import paramiko

    from builder.deploy.transport.ssh import resolve

    config = paramiko.SSHConfig.from_text(
        "Host via-proxy\n  HostName 127.0.0.1\n  Port 40022\n  HostKeyAlias server1\n"
        "Host plain\n  Port 2222\n"
    )
    assert resolve("via-proxy", config).key_name() == "server1"
    assert resolve("plain", config).key_name() == "[plain]:2222"


DYING_PROXY = """\
import os, select, socket, sys, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:  # forwards for a while, then goes away like a lost jump host
    ready, _, _ = select.select([0, sock], [], [], 0.05)
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
"""


def test_proxy_command_that_goes_away_is_a_lost_connection_at_once(
    target: Target, tmp_path: Path
) -> None:
    import sys
    import time

    script = tmp_path / "proxy.py"
    script.write_text(DYING_PROXY)
    command = shlex.join([sys.executable, str(script), target.host, str(target.port), "3"])
    config = write_config(
        tmp_path, f"Host dying\n  HostName {target.host}\n  User root\n  ProxyCommand {command}\n"
    )
    with connect("dying", options=pinned_options(target, tmp_path, config=config)) as t:
        assert t.run(["true"]).ok
        started = time.monotonic()
        with pytest.raises(TransportError, match="lost the connection"):
            t.run(["sleep", "60"])
        assert (
            time.monotonic() - started < 25
        )  # at once, not after a 30 s keepalive (generous: a loaded machine)


def test_proxy_command_that_exits_is_named_at_once(target: Target, tmp_path: Path) -> None:
    # paramiko alone polls a dead ProxyCommand until the connect timeout (here 60 s) runs out
    import time

    config = write_config(
        tmp_path,
        "Host broken\n  HostName 203.0.113.9\n  User root\n"
        "  ProxyCommand sh -c 'echo no route to the jump host >&2; exit 3'\n",
    )
    started = time.monotonic()
    with pytest.raises(TransportError) as e:
        connect("broken", options=pinned_options(target, tmp_path, config=config))
    assert "its ProxyCommand ended (exit status 3)" in str(e.value)
    assert time.monotonic() - started < 45  # a hang guard well under the 60 s connect timeout
