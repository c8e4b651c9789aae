"""A rootless host on the real test server: its units run under its own user's systemd and podman.

The server is prepared the way docs/rootless.md tells an administrator to (as root, once): a
user, lingering on, the deployer's key in its authorized_keys. Everything after that is
`bundle` connecting as that user.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

USER = "apps"
ROOTLESS_STACK = WEB_STACK.replace(
    'address = "web1-test"',
    f'address = "web1-test"\nssh_user = "{USER}"\nrootless = true\nconfirm_timeout = 5',
)


NETWORK_ONLINE = "systemctl add-wants multi-user.target network-online.target"


def prepare_user(target: Target, linger: bool = True, network_online: bool = True) -> None:
    if network_online:
        target.ssh(f"{NETWORK_ONLINE} && systemctl start network-online.target")
    target.ssh(
        f"useradd -m -s /bin/bash {USER} && install -d -m 700 -o {USER} -g {USER} ~{USER}/.ssh"
        f" && install -m 600 -o {USER} -g {USER} /root/.ssh/authorized_keys ~{USER}/.ssh/"
    )
    if linger:
        target.ssh(f"loginctl enable-linger {USER}")
        for _ in range(100):  # the user's manager starts in the background
            if (
                target.ssh(
                    f"systemctl is-active user@$(id -u {USER}).service", check=False
                ).returncode
                == 0
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"the systemd user manager of {USER} did not start")


def as_user(target: Target, command: str) -> str:
    uid = target.ssh(f"id -u {USER}").stdout.strip()
    env = f"XDG_RUNTIME_DIR=/run/user/{uid}"
    return target.ssh(f"runuser -u {USER} -- env {env} sh -c '{command}'").stdout


def rootless_project(tmp_path: Path, target: Target, stack: str = ROOTLESS_STACK) -> DeployProject:
    project = make_deploy_project(tmp_path, target, stack)
    config = project.home / ".ssh/config"
    config.write_text(config.read_text().replace("User root", f"User {USER}"))
    return project


def test_a_rootless_host_deploys_switches_rolls_back_and_comes_back_after_a_reboot(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    prepare_user(target)
    project = rootless_project(tmp_path, target)
    out = project.ok("switch", "web1").stdout
    assert "switch to 1 (first deploy): ok" in out
    assert project.fetch(8080) == "first from web1\n"

    home = f"/home/{USER}"
    units = as_user(target, "ls ~/.config/containers/systemd").split()
    assert units == ["other.container", "web-data.volume", "web.container"]
    assert "web.container" not in target.ssh("ls /etc/containers/systemd", check=False).stdout
    assert as_user(target, "systemctl --user is-active web.service other.service").split() == [
        "active",
        "active",
    ]
    pid = as_user(target, "systemctl --user show -p MainPID --value web.service").strip()
    assert target.ssh(f"ps -o user= -p {pid}").stdout.strip() == USER
    state = target.ssh(f"stat -c %U {home}/.local/state/bundle/current").stdout.strip()
    assert state == USER  # the state folder is the user's, under its home

    project.edit("web1.toml", 'message = "first"', 'message = "second"')
    other_pid = as_user(target, "systemctl --user show -p MainPID --value other.service")
    out = project.ok("switch", "web1").stdout
    assert "1 -> 2: ok" in out
    assert project.fetch(8080) == "second from web1\n"
    assert as_user(target, "systemctl --user show -p MainPID --value other.service") == other_pid

    assert "2 -> 1: ok" in project.ok("rollback", "web1").stdout
    assert project.fetch(8080) == "first from web1\n"
    status = project.json("status", "web1")
    assert status["current"] == 1
    assert status["units"]["web.container"]["active"] == "active"  # read with systemctl --user

    target.reboot()  # lingering starts the user's manager, which starts the units
    assert project.fetch(8080, tries=300) == "first from web1\n"


def test_a_rootless_host_is_refused_clearly_when_the_server_is_not_ready(
    tmp_path: Path, target_factory: Callable[[], Target]
) -> None:
    target = target_factory()
    prepare_user(target, linger=False, network_online=False)
    project = rootless_project(tmp_path, target)
    result = project.run("switch", "web1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"lingering is off for {USER}: its units would stop when it logs out and would not "
        f"start at boot; as root, run `loginctl enable-linger {USER}`"
    )
    target.ssh(f"loginctl enable-linger {USER}")

    result = project.run("switch", "web1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        "network-online.target is inactive on this server, and rootless podman units wait for "
        f"it, then fail; as root, run `{NETWORK_ONLINE} && systemctl start network-online.target`"
    )
    target.ssh(f"{NETWORK_ONLINE} && systemctl start network-online.target")

    project.edit("web1.toml", '"0.0.0.0:8080:8080"', '"0.0.0.0:80:8080"')
    result = project.run("switch", "web1")
    assert result.returncode == 1
    assert "web.container publishes port 80, but a rootless user may bind only ports from 1024" in (
        result.stderr
    )
    assert "net.ipv4.ip_unprivileged_port_start=80" in result.stderr
    assert not as_user(target, "ls ~/.config/containers/systemd 2>/dev/null || true").strip()

    # the same stack reached as root: refused before anything changes
    project.edit("web1.toml", '"0.0.0.0:80:8080"', '"0.0.0.0:8080:8080"')
    config = project.home / ".ssh/config"
    config.write_text(config.read_text().replace(f"User {USER}", "User root"))
    result = project.run("switch", "web1")
    assert result.returncode == 1
    assert f"is rootless and runs as {USER}, but the switcher runs as root; connect as {USER}" in (
        result.stderr
    )


def test_rootless_with_root_as_its_user_is_a_stack_error(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "stacks/templates/web").mkdir(parents=True)
    (root / "stacks/web1.toml").write_text(
        ROOTLESS_STACK.replace(f'ssh_user = "{USER}"', 'ssh_user = "root"')
    )
    (root / "stacks/templates/web/index.html.j2").write_text("x\n")
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", "check", "web1"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "error: stacks/web1.toml:5: host.rootless: needs ssh_user to be the user the units run "
        'as, not root (e.g. ssh_user = "apps")'
    )
