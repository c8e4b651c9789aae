"""Deploy errors: one clear line each, exit 1, and the server keeps what it had."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Target
from tests.server.conftest import DeployProject, make_deploy_project


@pytest.fixture(scope="module")
def active(
    target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> DeployProject:
    """One project with generation 1 active on the module's server."""
    p = make_deploy_project(tmp_path_factory.mktemp("errors"), target)
    p.ok("switch", "web1")
    assert p.fetch(8080) == "first from web1\n"
    return p


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def still_on_generation_1(p: DeployProject) -> None:
    assert (
        p.target.ssh("readlink /var/lib/bundle/current").stdout.strip().startswith("generations/1-")
    )
    assert p.fetch(8080) == "first from web1\n"


def test_unreachable_host(active: DeployProject) -> None:
    t0 = time.monotonic()
    line = one_line_failure(
        active.run("status", "web1", "--target", f"ssh://root@{active.target.host}:2299")
    )
    assert f"{active.target.host}:2299" in line
    assert time.monotonic() - t0 < 15


def test_authentication_refused(active: DeployProject, tmp_path: Path) -> None:
    other_key = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    config = active.home / ".ssh/config"
    saved = config.read_text()
    try:
        config.write_text(saved.replace(str(active.home / ".ssh/id_test"), str(other_key)))
        line = one_line_failure(active.run("switch", "web1"))
        assert "authentication" in line.lower() and "root" in line
    finally:
        config.write_text(saved)
    still_on_generation_1(active)


def test_unknown_host_key_then_accept_new(active: DeployProject) -> None:
    known = active.home / ".ssh/known_hosts"
    saved = known.read_text()
    try:
        known.write_text("")
        line = one_line_failure(active.run("status", "web1"))
        assert "--accept-new" in line and "SHA256:" in line
        accepted = active.run("status", "web1", "--accept-new")
        assert accepted.returncode == 0, accepted.stderr
        assert active.target.host in known.read_text()
        assert active.run("status", "web1").returncode == 0
    finally:
        known.write_text(saved)


def test_changed_host_key_is_always_refused(active: DeployProject, tmp_path: Path) -> None:
    known = active.home / ".ssh/known_hosts"
    saved = known.read_text()
    fake = tmp_path / "fake"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    try:
        key_line = " ".join(fake.with_suffix(".pub").read_text().split()[:2])
        known.write_text(f"{active.target.host} {key_line}\n")
        for extra in ((), ("--accept-new",)):
            line = one_line_failure(active.run("switch", "web1", *extra))
            assert "changed" in line.lower() and "ssh-keygen -R" in line
    finally:
        known.write_text(saved)
    still_on_generation_1(active)


def test_generation_not_built(active: DeployProject) -> None:
    line = one_line_failure(active.run("push", "web1", "--generation", "9"))
    assert "generation 9 is not built" in line


def test_generation_not_on_the_server(active: DeployProject) -> None:
    active.edit("web1.toml", 'message = "first"', 'message = "unpushed"')
    try:
        built = active.json("build", "web1")
        line = one_line_failure(
            active.run("activate", "web1", "--generation", str(built["generation"]))
        )
        assert f"generation {built['generation']} is not on the server" in line
        assert f"bundle push web1 --generation {built['generation']}" in line
    finally:
        active.edit("web1.toml", 'message = "unpushed"', 'message = "first"')
    still_on_generation_1(active)


def test_lock_held_by_another_deploy(active: DeployProject) -> None:
    holder = (
        "import fcntl, json, os, time\n"
        "fd = os.open('/var/lib/bundle/lock', os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.pwrite(fd, json.dumps({'user': 'alice', 'pid': os.getpid(), 'host': 'laptop',"
        " 'command': 'activate 7', 'since': '2026-11-25T03:00:00Z'}).encode(), 0)\n"
        "open('/run/holder.ready', 'w').close()\n"
        "time.sleep(120)\n"
    )
    active.target.write_file("/run/holder.py", holder)
    active.target.ssh(
        "rm -f /run/holder.ready; systemd-run --unit=lockholder python3 /run/holder.py"
    )
    try:
        active.target.ssh(
            "for i in $(seq 50); do [ -e /run/holder.ready ] && break; sleep 0.1; done"
        )
        active.edit("web1.toml", 'message = "first"', 'message = "locked out"')
        line = one_line_failure(active.run("switch", "web1"))
        assert "held by alice" in line and "activate 7" in line and "2026-11-25T03:00:00Z" in line
    finally:
        active.target.ssh("systemctl stop lockholder", check=False)
        active.edit("web1.toml", 'message = "locked out"', 'message = "first"')
    still_on_generation_1(active)


def test_server_disk_full(active: DeployProject) -> None:
    # a tiny tmpfs over the staging folder, where a push lands first: it runs out of space
    active.target.ssh("mount -t tmpfs -o size=600k tmpfs /var/lib/bundle/incoming")
    big = active.stacks / "templates/web/big.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024))  # random: gzip cannot shrink it
    active.edit(
        "web1.toml",
        'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }]',
        'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }, { source = "web/big.bin", mount = "/www/big.bin" }]',
    )
    try:
        line = one_line_failure(active.run("switch", "web1"))
        assert "no space left" in line.lower(), line
        listing = active.target.ssh("ls /var/lib/bundle/generations").stdout.split()
        assert all(name.startswith("1-") for name in listing), listing
    finally:
        active.target.ssh("umount /var/lib/bundle/incoming")
        active.edit("web1.toml", ', { source = "web/big.bin", mount = "/www/big.bin" }]', "]")
        big.unlink()
    still_on_generation_1(active)
    # with space again the next switch completes
    active.edit("web1.toml", 'message = "first"', 'message = "after the disk was freed"')
    try:
        active.ok("switch", "web1")
        assert active.fetch(8080) == "after the disk was freed from web1\n"
    finally:
        active.edit("web1.toml", 'message = "after the disk was freed"', 'message = "first"')
        active.ok("switch", "web1")
