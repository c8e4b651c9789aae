"""The local transport (for `--target DIR` and this machine) and `--target` parsing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.base.errors import InputError
from builder.deploy.transport import LocalTransport, Transport, TransportError, open_transport
from builder.deploy.transport.address import SshAddress, parse_jump, parse_target

MiB = 1024 * 1024


@pytest.fixture
def local() -> LocalTransport:
    return LocalTransport()


def test_run_output_and_exit_codes(local: LocalTransport) -> None:
    r = local.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.rc, r.stdout, r.stderr, r.bytes_sent) == (7, b"out\n", b"err\n", 0)
    assert local.run(["true"]).ok
    assert local.run(["sh", "-c", "kill -TERM $$"]).rc == -15
    assert isinstance(local, Transport) and local.describe() == "this machine"


def test_argv_is_not_a_shell_line(local: LocalTransport) -> None:
    tricky = ["a b", "$HOME", "`id`", "x;y", "*", ""]
    r = local.run([sys.executable, "-c", "import sys; print(sys.argv[1:])", *tricky])
    assert r.stdout.decode().strip() == repr(tricky)


def test_cwd(local: LocalTransport, tmp_path: Path) -> None:
    assert local.run(["pwd"], cwd=str(tmp_path)).stdout.decode().strip() == str(tmp_path)
    with pytest.raises(TransportError, match=r"cannot run `pwd` in /no/such/dir on this machine"):
        local.run(["pwd"], cwd="/no/such/dir")


def test_missing_program(local: LocalTransport) -> None:
    with pytest.raises(TransportError) as e:
        local.run(["no-such-program-here", "x"])
    assert "\n" not in str(e.value) and e.value.exit_code == 1
    assert str(e.value).startswith("cannot run `no-such-program-here x` on this machine: ")


def test_stdin_bytes_and_file(local: LocalTransport, tmp_path: Path) -> None:
    r = local.run(["tr", "a-z", "A-Z"], stdin=b"hello")
    assert (r.stdout, r.bytes_sent) == (b"HELLO", 5)
    data = tmp_path / "data"
    block = os.urandom(MiB)
    data.write_bytes(block * 40)
    with data.open("rb") as f:
        r = local.run(["sha256sum"], stdin=f)
    assert r.stdout.split()[0].decode() == hashlib.sha256(block * 40).hexdigest()
    assert r.bytes_sent == 40 * MiB


def test_no_stdin_is_eof(local: LocalTransport) -> None:
    assert local.run(["cat"], timeout=10).stdout == b""


def test_large_stdout_and_stderr_while_feeding_stdin(local: LocalTransport) -> None:
    r = local.run(
        ["sh", "-c", "head -c 8388608 /dev/zero >&2; wc -c; head -c 8388608 /dev/zero"],
        stdin=b"x" * (16 * MiB),
        timeout=60,
    )
    assert (len(r.stderr), r.stdout[:9], len(r.stdout)) == (8 * MiB, b"16777216\n", 8 * MiB + 9)


def test_command_that_ignores_stdin(local: LocalTransport) -> None:
    r = local.run(["true"], stdin=b"x" * (16 * MiB), timeout=10)
    assert r.ok and r.bytes_sent < 16 * MiB


def test_timeout_kills_the_command_and_its_children(local: LocalTransport, tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=r"did not finish within 0.5 s and was killed"):
        local.run(["sh", "-c", f"(sleep 2; touch {marker}) & sleep 30"], timeout=0.5)
    assert time.monotonic() - t0 < 3
    time.sleep(2.5)
    assert not marker.exists()


def test_open_transport_dir_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fake-root").mkdir()
    for text, root in [
        (str(tmp_path / "fake-root"), tmp_path / "fake-root"),
        ("./fake-root", tmp_path / "fake-root"),
        ("fake-root", tmp_path / "fake-root"),  # an existing folder needs no ./
        ("./new/../later", tmp_path / "later"),  # may not exist yet
        ("/", Path("/")),  # this machine itself
    ]:
        transport, got = open_transport(text, "ignored.example.org")
        with transport:
            assert isinstance(transport, LocalTransport)
            assert got == str(root)


def test_no_paramiko_at_build_time() -> None:
    code = (
        "import sys, builder.deploy.transport, builder.deploy.transport.local, builder.deploy.transport.address\n"
        "from builder.deploy.transport import open_transport\n"
        "open_transport('./x', 'h')\n"
        "print('paramiko' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("ssh://vps1", SshAddress("vps1")),
        ("ssh://deploy@vps1.example.org", SshAddress("vps1.example.org", None, "deploy")),
        ("ssh://root@10.0.0.5:2222/", SshAddress("10.0.0.5", 2222, "root")),
        ("ssh://[2001:db8::1]:22", SshAddress("2001:db8::1", 22)),
        ("ssh://root@[::1]", SshAddress("::1", None, "root")),
        ("ssh://MyAlias", SshAddress("MyAlias")),  # case kept for ssh config Host lines
    ],
)
def test_parse_ssh_targets(text: str, address: SshAddress) -> None:
    assert parse_target(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vps1", "no such folder and not an ssh:// URL"),
        ("ssh://", "not an ssh address"),
        ("ssh://host:99999", "the port is not a number"),
        ("ssh://host:port", "the port is not a number"),
        ("ssh://host/var/lib", "an ssh target names a server only"),
        ("ssh://u:pw@host", "an ssh target names a server only"),
    ],
)
def test_bad_targets(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        parse_target(text)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_target_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    with pytest.raises(InputError, match="exists and is not a folder"):
        parse_target(str(tmp_path / "f"))


def test_parse_jump() -> None:
    assert parse_jump("bastion") == SshAddress("bastion")
    assert parse_jump(" me@bastion:2200") == SshAddress("bastion", 2200, "me")
    assert parse_jump("ssh://me@[fe80::1]:22") == SshAddress("fe80::1", 22, "me")
