"""Reload instead of restart on a real server: a change of only a container's config files
reloads it (same container, new file seen through its mount, health gate still run), a change
of its unit restarts it, and a reload whose gate fails is undone with the old file back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import SAFE_STACK, STATE, current, safe_project
from tests.server.conftest import DeployProject

RELOADING = SAFE_STACK.replace(
    'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }]\n',
    'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }]\n'
    'reload = { command = ["sh", "-c", "mkdir -p /tmp; date +%s%N >> /tmp/reloads"] }\n',
)


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = safe_project(tmp_path_factory.mktemp("reload"), target, RELOADING)
    project.ok("switch", "web1")
    return project


def container(target: Target) -> tuple[str, str]:
    """The web container's ID and start time."""
    out = target.ssh("podman inspect web --format '{{.Id}} {{.State.StartedAt}}'").stdout
    ident, _, started = out.strip().partition(" ")
    return ident, started


def reloads(target: Target) -> int:
    done = target.ssh("podman exec web cat /tmp/reloads", check=False)
    return len(done.stdout.split()) if done.returncode == 0 else 0


def test_a_config_change_reloads_the_same_container_which_serves_the_new_file(
    p: DeployProject,
) -> None:
    before = container(p.target)
    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    plan = p.ok("plan", "web1").stdout
    assert (
        "  reload        web.container  (changed: files/web/index.html; only config files: "
        "reloaded, not restarted)"
    ) in plan.splitlines(), plan

    # what a mount through `current` would give: the file of the generation it started with
    p.target.ssh(
        f"podman run -d --rm --name pinned -v {STATE}/current/files/web/index.html:/x:ro "
        "registry.test:5000/bundle/web:1.0.0 sleep 600"
    )
    try:
        result = p.ok("switch", "web1")
        pinned = p.target.ssh("podman exec pinned cat /x").stdout
    finally:
        p.target.ssh("podman rm -f -t 0 pinned", check=False)
    assert pinned == "first from web1\n"
    assert "  reloaded web.container; 2 units left running untouched" in result.stdout.splitlines()
    assert container(p.target) == before  # the same container, never restarted
    assert reloads(p.target) == 1
    assert p.fetch(8080) == "second from web1\n"  # through the mount it had since it started
    seen = p.target.ssh("podman exec web cat /www/index.html").stdout
    assert seen == "second from web1\n"

    p.edit("web1.toml", 'message = "second"', 'message = "third"')
    report = p.json("switch", "web1")
    assert report["plan"]["reload"] == ["web.container"] and report["plan"]["restart"] == []
    assert report["health"]["passed"] is True and report["confirmed"] is True
    assert container(p.target) == before and reloads(p.target) == 2
    assert p.fetch(8080) == "third from web1\n"


def test_a_reload_that_fails_its_gate_is_undone_with_the_old_file(p: DeployProject) -> None:
    before = current(p.target)
    page = p.stacks / "templates/web/index.html.j2"
    saved = page.read_text()
    page.write_text("down for maintenance\n")
    try:
        result = p.run("switch", "web1", "--json")
    finally:
        page.write_text(saved)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["result"] == "rolled back" and report["plan"]["reload"] == ["web.container"]
    assert current(p.target) == before
    assert p.fetch(8080) == "third from web1\n"


def test_a_unit_change_restarts(p: DeployProject) -> None:
    before = container(p.target)
    p.edit("web1.toml", "reload = {", 'environment = { MODE = "x" }\nreload = {')
    report = p.json("switch", "web1")
    assert report["plan"]["restart"] == ["web.container"] and "reload" not in report["plan"]
    assert container(p.target)[0] != before[0]
    assert p.fetch(8080) == "third from web1\n"
