"""The health gate on a real server: a generation that does not work is undone by the server
itself, the deploy exits 1 and its first line says "rolled back", with the failed check."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import current, history, safe_project
from tests.server.conftest import DeployProject


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = safe_project(tmp_path_factory.mktemp("health"), target)
    return project


def accepted_logins(target: Target) -> int:
    out = target.ssh("journalctl -u ssh.service -o cat | grep -c 'Accepted publickey'", check=False)
    return int(out.stdout.strip() or 0)


def test_checks_pass_and_the_deploy_is_confirmed_over_a_new_connection(p: DeployProject) -> None:
    logins = accepted_logins(p.target)
    result = p.ok("switch", "web1")
    lines = result.stdout.splitlines()
    assert lines[0] == "web1: switch to 1 (first deploy): ok", result.stdout
    assert any(
        ln.startswith("  health: every unit up and 3 checks passed in ")
        and ln.endswith("; confirmed over a new connection")
        for ln in lines
    ), result.stdout
    # one connection pushed and activated, a second one confirmed
    assert accepted_logins(p.target) - logins == 2 + 1  # + this test's own journalctl login
    assert p.fetch(8080) == "first from web1\n"

    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    report = p.json("switch", "web1")
    assert report["result"] == "ok" and report["confirmed"] is True
    assert report["health"]["passed"] is True
    checks = {c["kind"]: c for c in report["health"]["checks"]}
    assert checks["http"]["output"] == "answered 200"
    assert checks["tcp"]["output"] == "connected"
    assert checks["unit"]["output"] == "3 units active"  # web, other, web-data
    assert history(p.target)[-1]["result"] == "ok"

    # no dead-man: the activation runs in the SSH session, still behind the health gate
    p.edit("web1.toml", 'message = "second"', 'message = "inline"')
    inline = p.json("switch", "web1", "--confirm-timeout", "0")
    assert inline["result"] == "ok" and "confirmed" not in inline and "run" not in inline
    assert inline["health"]["passed"] is True
    p.edit("web1.toml", 'message = "inline"', 'message = "second"')
    p.ok("switch", "web1")


def test_failing_check_rolls_back_by_itself_and_says_so_first(p: DeployProject) -> None:
    before = current(p.target)
    page = p.stacks / "templates/web/index.html.j2"
    saved = page.read_text()
    page.write_text("down for maintenance\n")
    try:
        t0 = time.monotonic()
        result = p.run("switch", "web1")
        took = time.monotonic() - t0
    finally:
        page.write_text(saved)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        f"error: web1: rolled back to generation {before}: web.service failed its health check; "
    ), result.stderr
    assert "GET http://127.0.0.1:8080/ answers 200 containing 'from web1'" in first
    assert "down for maintenance" in first  # what the check saw
    assert 8 <= took < 300, took  # at least the health timeout (8 s); the bound is a hang guard
    assert current(p.target) == before
    assert p.fetch(8080) == "second from web1\n"
    last = history(p.target)[-1]
    assert last["result"] == "rolled back" and "down for maintenance" in last["message"]


def test_json_report_of_a_rollback_has_the_checks(p: DeployProject) -> None:
    page = p.stacks / "templates/web/index.html.j2"
    saved = page.read_text()
    page.write_text("down for maintenance\n")
    try:
        result = p.run("switch", "web1", "--json", "--health-timeout", "2")
    finally:
        page.write_text(saved)
    assert result.returncode == 1
    import json

    report = json.loads(result.stdout)
    assert report["result"] == "rolled back"
    assert report["health"]["timeout"] == 2 and report["health"]["passed"] is False
    (failed,) = [c for c in report["health"]["checks"] if not c["ok"]]
    assert failed["unit"] == "web.container" and failed["kind"] == "http"
    assert failed["output"].startswith("answered 200 without 'from web1' in the body")
    assert result.stderr.startswith("error: web1: rolled back to generation")


def test_restart_loop_rolls_back(p: DeployProject) -> None:
    before = current(p.target)
    p.edit(
        "web1.toml",
        "[containers.other]",
        '[containers.crashy]\nimage = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n'
        'command = ["sh", "-c", "sleep 0.3; exit 3"]\n\n[containers.other]',
    )
    try:
        result = p.run("switch", "web1")
    finally:
        p.edit("web1.toml", 'command = ["sh", "-c", "sleep 0.3; exit 3"]\n', "")
        p.edit(
            "web1.toml",
            '[containers.crashy]\nimage = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n\n',
            "",
        )
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), result.stderr
    assert "crashy.service" in first
    assert current(p.target) == before
    crashy = "/etc/containers/systemd/crashy.container"
    assert p.target.ssh(f"test -e {crashy}", check=False).returncode != 0
    state = p.target.ssh("systemctl is-active crashy.service", check=False).stdout.strip()
    assert state != "active", state


def test_no_rollback_leaves_the_generation_and_still_exits_1(p: DeployProject) -> None:
    before = current(p.target)
    page = p.stacks / "templates/web/index.html.j2"
    saved = page.read_text()
    page.write_text("down for maintenance\n")
    try:
        result = p.run("switch", "web1", "--no-rollback", "--health-timeout", "2")
        assert result.returncode == 1, result.stdout + result.stderr
        line = result.stderr.splitlines()[0]
        assert "1 health check failed after" in line and "stays active (--no-rollback)" in line
        assert current(p.target) > before
        assert p.fetch(8080) == "down for maintenance\n"
        assert history(p.target)[-1]["result"] == "unhealthy"
    finally:
        page.write_text(saved)
    p.ok("switch", "web1")  # fixed: the next switch is healthy again
    assert p.fetch(8080) == "second from web1\n"
