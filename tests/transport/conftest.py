"""Fixtures for transport tests: a hermetic ssh setup against the real test server.

Nothing here reads or writes the real ~/.ssh: HOME points at a temporary folder, the
ssh-agent variable is removed, and every SSH connection gets explicit files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.deploy.transport.ssh import SshTransport, connect
from tests.harness import Target

from .sshkit import pinned_options


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME for every test; the user's ssh settings never leak in or get changed."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("BUNDLE_SSH_CONFIG", raising=False)
    return home


@pytest.fixture(scope="module")
def ssh(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTransport]:
    """One connection to the module's server, shared by its tests."""
    tmp = tmp_path_factory.mktemp("ssh")
    with connect(target.host, target.port, target.user, options=pinned_options(target, tmp)) as t:
        yield t
