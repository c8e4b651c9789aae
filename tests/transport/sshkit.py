"""Helpers for SSH tests: options pinned to one test server, keys, known_hosts lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.deploy.transport import SshOptions
from tests.harness import Target


def pinned_options(target: Target, tmp: Path, **changes: object) -> SshOptions:
    """Options that log in to `target` with its key and trust its pinned host keys only."""
    config = tmp / "ssh_config"
    config.touch()
    fields: dict[str, object] = {
        "config": config,
        "known_hosts": tmp / "known_hosts",
        "extra_known_hosts": (target.known_hosts_path,),
        "identity_files": (target.key_path,),
        "use_agent": False,
        "connect_timeout": 60.0,  # a hang guard: a ProxyCommand on a loaded machine takes seconds
    }
    fields.update(changes)
    return SshOptions(**fields)  # type: ignore[arg-type]


def host_key_lines(target: Target, name: str) -> str:
    """The target's pinned known_hosts lines, rewritten for another name (e.g. 127.0.0.1)."""
    lines = target.known_hosts_path.read_text().splitlines()
    return "".join(f"{name} {line.split(' ', 1)[1]}\n" for line in lines)


def new_key(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path
