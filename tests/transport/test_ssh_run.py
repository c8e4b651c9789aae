"""Running commands over a real SSH connection: output, exit codes, big streams, timeouts."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import SshTransport, connect
from tests.harness import Target

from .sshkit import pinned_options

MiB = 1024 * 1024


def test_output_and_exit_code(ssh: SshTransport, target: Target) -> None:
    r = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.rc, r.stdout, r.stderr, r.ok) == (3, b"out\n", b"err\n", False)
    assert r.stderr_line() == "err"
    assert ssh.run(["true"]).ok
    assert ssh.describe() == f"root@{target.host}:22"


def test_argv_is_quoted_for_the_remote_shell(ssh: SshTransport) -> None:
    tricky = ["a b", "it's", '"q"', "$HOME", "`id`", "x;y", "*", "", "new\nline"]
    r = ssh.run(["python3", "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *tricky])
    assert r.ok, r.stderr
    assert json.loads(r.stdout) == tricky


def test_cwd(ssh: SshTransport) -> None:
    ssh.run(["mkdir", "-p", "/srv/work dir"])
    assert ssh.run(["pwd"], cwd="/srv/work dir").stdout == b"/srv/work dir\n"
    r = ssh.run(["pwd"], cwd="/no/such/folder")
    assert r.rc != 0 and b"/no/such/folder" in r.stderr


def test_stdin_bytes(ssh: SshTransport) -> None:
    r = ssh.run(["tr", "a-z", "A-Z"], stdin=b"hello\n")
    assert (r.stdout, r.bytes_sent) == (b"HELLO\n", 6)
    # no stdin means EOF at once, not a hang
    assert ssh.run(["cat"], timeout=10).stdout == b""


def test_stream_50_mib_from_a_file(ssh: SshTransport, tmp_path: Path) -> None:
    data = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with data.open("wb") as f:
        for _ in range(50):
            block = os.urandom(MiB)
            digest.update(block)
            f.write(block)
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with data.open("rb") as f:
            r = ssh.run(["sha256sum"], stdin=f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - t0
    assert r.ok, r.stderr
    assert r.stdout.split()[0].decode() == digest.hexdigest()
    assert r.bytes_sent == 50 * MiB
    assert peak < 16 * MiB, f"streaming held {peak / MiB:.1f} MiB in memory"
    print(
        f"50 MiB over ssh in {seconds:.2f} s ({50 / seconds:.0f} MiB/s), peak {peak / MiB:.1f} MiB"
    )


def test_large_stdout_and_stderr_at_once(ssh: SshTransport) -> None:
    # 16 MiB on each stream, interleaved in 64 KiB blocks: waiting on one stream deadlocks
    script = (
        "import sys\n"
        "for i in range(256):\n"
        "    sys.stdout.buffer.write(b'o' * 65536); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(b'e' * 65536); sys.stderr.flush()\n"
    )
    r = ssh.run(["python3", "-c", script], timeout=60)
    assert r.ok
    assert (len(r.stdout), len(r.stderr)) == (16 * MiB, 16 * MiB)
    assert set(r.stdout) == {ord("o")} and set(r.stderr) == {ord("e")}


def test_big_stderr_before_reading_stdin(ssh: SshTransport) -> None:
    # the command fills stderr before it reads a byte: stdin and stderr must flow together
    r = ssh.run(["sh", "-c", "head -c 8388608 /dev/zero >&2; wc -c"], stdin=b"x" * (20 * MiB))
    assert r.ok
    assert (r.stdout.strip(), len(r.stderr), r.bytes_sent) == (b"20971520", 8 * MiB, 20 * MiB)


def test_command_that_ignores_stdin(ssh: SshTransport) -> None:
    t0 = time.monotonic()
    r = ssh.run(["true"], stdin=b"x" * (20 * MiB), timeout=30)
    assert r.ok and r.bytes_sent <= 20 * MiB
    assert time.monotonic() - t0 < 10


def test_timeout(ssh: SshTransport) -> None:
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=r"did not finish within 1 s") as e:
        ssh.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - t0 < 5
    assert "\n" not in str(e.value) and e.value.exit_code == 1
    assert ssh.run(["echo", "still usable"]).stdout == b"still usable\n"


def test_killed_by_a_signal(ssh: SshTransport) -> None:
    r = ssh.run(["sh", "-c", "kill -KILL $$"])
    assert r.rc != 0


def test_run_after_close(target: Target, tmp_path: Path) -> None:
    t = connect(target.host, options=pinned_options(target, tmp_path), default_user="root")
    with t:
        assert t.run(["whoami"]).stdout == b"root\n"
    with pytest.raises(
        TransportError, match=r"lost the connection to root@.*while running `whoami`"
    ):
        t.run(["whoami"])
