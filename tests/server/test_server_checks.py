"""Before changing anything the server is checked: tools present and new enough, images pulled,
no hand edits to the files the switcher manages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Target
from tests.server.conftest import DeployProject, make_deploy_project


@pytest.fixture(scope="module")
def active(
    target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> DeployProject:
    p = make_deploy_project(tmp_path_factory.mktemp("checks"), target)
    p.ok("switch", "web1")
    assert p.fetch(8080) == "first from web1\n"
    return p


def current(p: DeployProject) -> str:
    return p.target.ssh("readlink /var/lib/bundle/current").stdout.strip()


def failure_line(p: DeployProject, *args: str) -> str:
    result = p.run(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_hand_edit_is_shown_and_refused_until_force(active: DeployProject) -> None:
    p = active
    before = current(p)
    unit = "/etc/containers/systemd/web.container"
    p.target.ssh(f"echo '# tuned by hand at 2am' >> {unit}")
    p.edit("web1.toml", 'message = "first"', 'message = "drifted"')
    try:
        line = failure_line(p, "switch", "web1")
        assert "web.container" in line and "--force" in line
        assert current(p) == before
        assert "tuned by hand" in p.target.ssh(f"cat {unit}").stdout
        status = p.json("status", "web1")
        assert any("web.container" in d for d in status["drift"])
        forced = p.json("switch", "web1", "--force")
        assert forced["result"] == "ok"
        assert "tuned by hand" not in p.target.ssh(f"cat {unit}").stdout
        assert p.fetch(8080) == "drifted from web1\n"
    finally:
        p.edit("web1.toml", 'message = "drifted"', 'message = "first"')
        p.ok("switch", "web1")


def test_new_image_is_pulled_before_the_switch_and_kept_for_rollback(active: DeployProject) -> None:
    p = active
    stack = p.stacks / "web1.toml"
    stack.write_text(stack.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    try:
        switched = p.json("switch", "web1")
        assert switched["pulled"] == ["registry.test:5000/bundle/web:1.1.0"]
        assert "1.1.0" in p.fetch(8081)  # the image's own page names its tag
        images = p.target.ssh("podman images --format '{{.Repository}}:{{.Tag}}'").stdout.split()
        assert {
            "registry.test:5000/bundle/web:1.0.0",
            "registry.test:5000/bundle/web:1.1.0",
        } <= set(images)
        back = p.json("rollback", "web1")
        assert back["result"] == "ok" and back.get("pulled", []) == []  # already there: no download
    finally:
        stack.write_text(stack.read_text().replace('version = "1.1.0"', 'version = "1.0.0"'))
        p.ok("switch", "web1")


@pytest.mark.parametrize(
    ("hide", "expected"),
    [
        ("/usr/bin/podman", "podman"),
        ("/usr/bin/systemctl", "systemctl"),
    ],
)
def test_missing_tool_is_refused_before_anything_changes(
    active: DeployProject, hide: str, expected: str
) -> None:
    p = active
    before = current(p)
    p.target.ssh(f"mv {hide} {hide}.hidden")
    p.edit("web1.toml", 'message = "first"', 'message = "never"')
    try:
        line = failure_line(p, "switch", "web1")
        assert expected in line
    finally:
        p.target.ssh(f"mv {hide}.hidden {hide}")
        p.edit("web1.toml", 'message = "never"', 'message = "first"')
    assert current(p) == before
    assert p.fetch(8080) == "first from web1\n"


def test_podman_too_old_for_pods_is_refused(active: DeployProject) -> None:
    p = active
    before = current(p)
    # a podman that says it is 4.9: too old for .pod units (5.0)
    p.target.ssh(
        "mv /usr/bin/podman /usr/bin/podman.real && printf '#!/bin/sh\\n"
        '[ "$1" = --version ] && echo podman version 4.9.3 && exit 0\\nexec /usr/bin/podman.real "$@"\\n\' '
        "> /usr/bin/podman && chmod 755 /usr/bin/podman"
    )
    p.edit("web1.toml", "[containers.other]", '[pods.side]\n\n[containers.other]\npod = "side"')
    p.edit("web1.toml", 'ports = ["0.0.0.0:8081:8080"]', "")
    try:
        line = failure_line(p, "switch", "web1")
        assert "5.0" in line and "4.9.3" in line
    finally:
        p.target.ssh("mv /usr/bin/podman.real /usr/bin/podman")
        (p.stacks / "web1.toml").write_text(
            (p.stacks / "web1.toml")
            .read_text()
            .replace("[pods.side]\n\n", "")
            .replace('pod = "side"', 'ports = ["0.0.0.0:8081:8080"]')
        )
    assert current(p) == before


def test_no_python3_on_the_server(active: DeployProject) -> None:
    p = active
    p.target.ssh("mv /usr/bin/python3 /usr/bin/python3.hidden")
    try:
        line = failure_line(p, "status", "web1")
        assert "python3" in line and "install" in line
    finally:
        p.target.ssh("mv /usr/bin/python3.hidden /usr/bin/python3")
    assert json.loads(p.run("status", "web1", "--json").stdout)["current"] is not None
