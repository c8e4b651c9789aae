"""A project whose host is a real test server, reached by the `bundle` command over SSH."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from builder.testserver.webstack import web_stack, write_stack
from tests.harness import Target

WEB_STACK = web_stack()


@dataclass
class DeployProject:
    root: Path
    home: Path
    target: Target
    env: dict[str, str] = field(default_factory=dict)

    @property
    def stacks(self) -> Path:
        return self.root / "stacks"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(self.home), **self.env}
        return subprocess.run(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, f"bundle {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.stacks / rel
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    def fetch(self, port: int, path: str = "/", tries: int = 50) -> str:
        """GET from the server; a container just started may need a moment to listen."""
        last: Exception | None = None
        for _ in range(tries):
            try:
                with urllib.request.urlopen(self.target.url(port, path), timeout=2) as r:
                    return r.read().decode()
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        raise AssertionError(f"{self.target.url(port, path)} did not answer: {last}")

    def main_pid(self, service: str) -> int:
        out = self.target.ssh(f"systemctl show -p MainPID --value {service}").stdout
        return int(out.strip())


def make_deploy_project(tmp_path: Path, target: Target, stack: str = WEB_STACK) -> DeployProject:
    root = tmp_path / "project"
    write_stack(root / "stacks", "web1", stack)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    reach(home, "web1-test", target, "id_test")
    return DeployProject(root, home, target)


def reach(home: Path, alias: str, target: Target, key_name: str) -> None:
    """HOME's ssh reaches `target` as `alias`: its key, a config entry, its host key pinned."""
    ssh = home / ".ssh"
    key = ssh / key_name
    shutil.copy(target.key_path, key)
    key.chmod(0o600)
    with (ssh / "config").open("a") as config:
        config.write(
            f"Host {alias}\n  HostName {target.host}\n  Port {target.port}\n"
            f"  User root\n  IdentityFile {key}\n"
        )
    with (ssh / "known_hosts").open("a") as known:
        known.write(target.known_hosts_path.read_text())


def add_host(p: DeployProject, name: str, target: Target) -> None:
    """Another host of the project, on its own server, reached as NAME-test."""
    reach(p.home, f"{name}-test", target, f"id_{name}")


@pytest.fixture
def deploy_project(tmp_path: Path, target: Target, registry: Any) -> DeployProject:
    return make_deploy_project(tmp_path, target)
