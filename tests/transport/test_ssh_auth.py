"""Logging in: identity files, the ssh-agent, and what a refusal says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import connect
from tests.harness import Target

from .sshkit import new_key, pinned_options

pytestmark = pytest.mark.usefixtures("forgiving_sshd")


def fingerprint_of(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True)
    return out.stdout.split()[1]


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent on a socket of this test; SSH_AUTH_SOCK points at it."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def ssh_add(key: Path) -> None:
    subprocess.run(["ssh-add", "-q", str(key)], check=True, capture_output=True)


def test_wrong_key_is_refused_with_what_was_tried(target: Target, tmp_path: Path) -> None:
    wrong = new_key(tmp_path / "wrong_key")
    options = pinned_options(target, tmp_path, identity_files=(wrong,))
    with pytest.raises(TransportError) as e:
        connect(target.host, options=options, default_user="root")
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 1
    assert msg.startswith(f"{target.host}:22 refused login as root (tried: {wrong} ")
    assert fingerprint_of(wrong) in msg
    assert "ssh-add KEYFILE" in msg and "IdentityFile" in msg


def test_no_keys_at_all(target: Target, tmp_path: Path) -> None:
    options = pinned_options(target, tmp_path, identity_files=())
    with pytest.raises(TransportError, match=r"refused login as root \(tried: no keys at all\)"):
        connect(target.host, options=options, default_user="root")


def test_wrong_user(target: Target, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=rf"{target.host}:22 refused login as nobody"):
        connect(target.host, user="nobody", options=pinned_options(target, tmp_path))


def test_default_key_in_home(target: Target, tmp_path: Path, hermetic_home: Path) -> None:
    (hermetic_home / ".ssh").mkdir(mode=0o700)
    shutil.copy(target.key_path, hermetic_home / ".ssh/id_ed25519")
    options = pinned_options(target, tmp_path, identity_files=())
    with connect(target.host, options=options, default_user="root") as t:
        assert t.run(["whoami"]).stdout == b"root\n"


def test_agent_key(target: Target, tmp_path: Path, agent: Path) -> None:
    ssh_add(target.key_path)
    options = pinned_options(target, tmp_path, identity_files=(), use_agent=True)
    with connect(target.host, options=options, default_user="root") as t:
        assert t.run(["whoami"]).stdout == b"root\n"


def test_agent_with_wrong_key_is_named(target: Target, tmp_path: Path, agent: Path) -> None:
    wrong = new_key(tmp_path / "agent_wrong")
    ssh_add(wrong)
    options = pinned_options(target, tmp_path, identity_files=(), use_agent=True)
    with pytest.raises(
        TransportError, match=re.escape(f"agent key agent_wrong {fingerprint_of(wrong)}")
    ):
        connect(target.host, options=options, default_user="root")


def test_empty_agent_is_mentioned(target: Target, tmp_path: Path, agent: Path) -> None:
    options = pinned_options(target, tmp_path, identity_files=(), use_agent=True)
    with pytest.raises(TransportError, match=r"no keys at all; the ssh-agent holds no keys"):
        connect(target.host, options=options, default_user="root")


def test_passphrase_key_not_in_agent(target: Target, tmp_path: Path) -> None:
    locked = new_key(tmp_path / "locked", passphrase="secret phrase")
    options = pinned_options(target, tmp_path, identity_files=(locked,))
    with pytest.raises(
        TransportError, match=r"locked \(has a passphrase and is not in the agent\)"
    ):
        connect(target.host, options=options, default_user="root")


def test_passphrase_key_through_the_agent_with_identities_only(
    target: Target, tmp_path: Path, agent: Path
) -> None:
    # the encrypted file names the key; the agent (which holds it unlocked) signs
    locked = tmp_path / "locked"
    shutil.copy(target.key_path, locked)
    shutil.copy(f"{target.key_path}.pub", f"{locked}.pub")
    os.chmod(locked, 0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-N", "secret phrase", "-f", str(locked)],
        check=True,
        capture_output=True,
    )
    ssh_add(target.key_path)
    ssh_add(new_key(tmp_path / "decoy"))  # IdentitiesOnly: never offered
    config = tmp_path / "config"
    config.write_text(
        f"Host srv\n  HostName {target.host}\n  User root\n  IdentityFile {locked}\n"
        "  IdentitiesOnly yes\n"
    )
    options = pinned_options(target, tmp_path, config=config, identity_files=(), use_agent=True)
    with connect("srv", options=options) as t:
        assert t.run(["whoami"]).stdout == b"root\n"
