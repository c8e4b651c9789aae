"""A conversation with one command (Transport.open) on this machine, and the deploy's session
(builder/deploy/session.py) served by the real launcher and switcher from a temp state folder:
requests answered as they come, deadlines kept per step, a Python that dies mid-session told
in one line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from activate.manifest_format import closure_hash, sha256
from activate.protocol import GenerationRow
from builder.bundle.build import switcher_files
from builder.deploy.remote import RemoteError, Server
from builder.deploy.session import SESSION_MARKER
from builder.deploy.transport import DeadlineExceeded, LocalTransport


def test_a_conversation_reads_each_reply_as_it_comes() -> None:
    echo = "import sys\nfor line in sys.stdin.buffer:\n    sys.stdout.buffer.write(line.upper()); sys.stdout.flush()\nsys.exit(3)"
    channel = LocalTransport().open([sys.executable, "-c", echo])
    deadline = time.monotonic() + 60
    for word in (b"one\n", b"two\n"):
        channel.write(word, deadline)
        assert channel.read_exactly(len(word), deadline) == word.upper()
    ended = channel.finish(deadline)
    assert (ended.rc, ended.stdout, channel.bytes_sent) == (3, b"", 8)


def test_a_silent_command_ends_by_the_deadline_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    silent = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    channel = LocalTransport().open([sys.executable, "-c", silent])
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        channel.read_exactly(1, time.monotonic() + 1)
    assert time.monotonic() - t0 < 30
    pid = int(pid_file.read_text())
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_writing_to_a_command_that_exited_is_not_an_error() -> None:
    channel = LocalTransport().open(["sh", "-c", "echo bye >&2; exit 5"])
    deadline = time.monotonic() + 60
    time.sleep(0.2)
    channel.write(b"x" * (4 * 1024 * 1024), deadline)
    assert channel.read_exactly(10, deadline) == b""
    ended = channel.finish(deadline)
    assert (ended.rc, ended.stderr) == (5, b"bye\n")


def switcher() -> tuple[str, dict[str, bytes]]:
    files = {path: data for path, (data, _mode) in switcher_files().items()}
    assert SESSION_MARKER in files
    return closure_hash((path, sha256(data)) for path, data in files.items()), files


def server(tmp_path: Path) -> Server:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return Server("web1", LocalTransport(), str(root / "var/lib/bundle"), str(root))


def test_one_session_installs_the_switcher_and_serves_its_calls(tmp_path: Path) -> None:
    digest, files = switcher()
    s = server(tmp_path)
    found = s.open_session(digest, files)
    assert found.switcher_sent and found.generations == frozenset()
    rows = s.call_rows("generations", row=GenerationRow, cwd=s.switcher_dir(digest))
    assert rows == []
    again = s.ensure_switcher(digest, files)  # checked again in the same session
    assert not again.switcher_sent
    assert s.channels == 1
    # a damaged copy is put back within the session, and its cached bytecode dropped
    (Path(s.switcher_dir(digest)) / "activate/status.py").write_bytes(b"")
    repaired = s.ensure_switcher(digest, files)
    assert repaired.switcher_sent and "activate/status.py is empty" in (repaired.repaired or "")
    assert s.channels == 1
    s.end_session()
    assert s.session is None
    pyc = list((Path(s.state) / "cache/pycache").rglob("*.pyc"))
    assert not list(Path(s.switcher_dir(digest)).rglob("__pycache__"))
    assert all("status" not in p.name for p in pyc)  # the damaged module's was dropped


def test_a_python_killed_mid_session_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, files = switcher()
    s = server(tmp_path)
    monkeypatch.setenv("BUNDLE_FAULT", "call-generations")  # the Python kills itself there
    s.open_session(digest, files)
    with pytest.raises(RemoteError) as e:
        s.call_rows("generations", row=GenerationRow, cwd=s.switcher_dir(digest))
    assert str(e.value) == (
        "web1: the switcher's `generations` was killed on the server before it finished "
        "(exit code -9); run `bundle status web1`: it finishes or undoes a switch that was "
        "cut short"
    )
    assert s.session is None  # the next step starts a Python of its own
