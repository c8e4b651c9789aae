"""The way back brings a unit back that the failed generation left crash-looping.

`db` runs in generation 1 and crash-loops in generation 2 (same unit, changed command). The
gate fails and the switcher goes back; db.service is then failed (start limit hit) while its
container is still being removed, and the old generation's db must run again all the same."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import current, history
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

DB = (
    "[containers.db]\n"
    'image = "registry.test:5000/bundle/web"\n'
    'version = "1.0.0"\n'
    'ports = ["0.0.0.0:8082:8080"]\n\n'
)
CRASHING = 'command = ["sh", "-c", "echo \'db: cannot open /data: no such volume\' >&2; exit 1"]\n'


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = make_deploy_project(tmp_path_factory.mktemp("wayback"), target, WEB_STACK + "\n" + DB)
    project.ok("switch", "web1")
    return project


def test_the_way_back_restarts_a_unit_the_new_generation_left_crash_looping(
    p: DeployProject,
) -> None:
    before = current(p.target)
    assert "bundle/web:1.0.0" in p.fetch(8082)
    p.edit(
        "web1.toml", 'ports = ["0.0.0.0:8082:8080"]\n', 'ports = ["0.0.0.0:8082:8080"]\n' + CRASHING
    )
    try:
        result = p.run("switch", "web1")
    finally:
        p.edit("web1.toml", CRASHING, "")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), result.stderr
    assert "db.service keeps crashing" in first, first
    assert "INCOMPLETE" not in result.stderr
    assert current(p.target) == before
    assert history(p.target)[-1]["result"] == "rolled back"
    assert "bundle/web:1.0.0" in p.fetch(8082)
    state = p.target.ssh("systemctl is-active db.service", check=False).stdout.strip()
    assert state == "active", p.target.ssh("journalctl -u db.service -n 60 --no-pager").stdout
    status = p.ok("status", "web1").stdout
    assert any(
        ln.split()[:2] == ["db.container", "active/running"] for ln in status.splitlines()
    ), status


def test_bundle_rollback_brings_back_a_unit_left_crash_looping_by_no_rollback(
    p: DeployProject,
) -> None:
    before = current(p.target)
    p.edit(
        "web1.toml", 'ports = ["0.0.0.0:8082:8080"]\n', 'ports = ["0.0.0.0:8082:8080"]\n' + CRASHING
    )
    try:
        kept = p.run("switch", "web1", "--no-rollback")
    finally:
        p.edit("web1.toml", CRASHING, "")
    assert kept.returncode == 1, kept.stdout + kept.stderr
    assert "stays active (--no-rollback)" in kept.stderr, kept.stderr
    assert current(p.target) != before
    failed = p.target.ssh("systemctl is-active db.service", check=False).stdout.strip()
    assert failed == "failed", failed  # crash-looped until systemd gave up
    back = p.run("rollback", "web1")
    assert back.returncode == 0, back.stdout + back.stderr
    assert current(p.target) == before
    assert "bundle/web:1.0.0" in p.fetch(8082)
    state = p.target.ssh("systemctl is-active db.service", check=False).stdout.strip()
    assert state == "active", p.target.ssh("journalctl -u db.service -n 60 --no-pager").stdout
