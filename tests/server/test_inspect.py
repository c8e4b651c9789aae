"""Looking before leaping: plan, log and show."""

from __future__ import annotations

from tests.server.conftest import DeployProject


def test_plan_shows_what_would_happen_without_doing_it(deploy_project: DeployProject) -> None:
    p = deploy_project
    first = p.json("plan", "web1")
    assert first["from"] is None and first["to"] == 1
    assert set(first["plan"]["start"]) >= {"web.container", "other.container"}
    assert p.json("status", "web1")["current"] is None  # pushed, still not active

    p.ok("switch", "web1")
    pid = p.main_pid("web.service")
    p.edit("web1.toml", 'message = "first"', 'message = "planned"')
    text = p.ok("plan", "web1").stdout
    assert "activating 2 (now 1) would:" in text
    assert "restart       web.container" in text
    assert "leave alone   other.container" in text
    assert p.fetch(8080) == "first from web1\n"
    assert p.main_pid("web.service") == pid

    log = p.json("log", "web1")
    assert [(e["action"], e["from"], e["to"], e["result"]) for e in log] == [
        ("activate", None, 1, "ok")
    ]
    assert "activate" in p.ok("log", "web1").stdout


def test_show_prints_units_and_their_files(deploy_project: DeployProject) -> None:
    p = deploy_project
    p.ok("build", "web1")
    listing = p.ok("show", "web1").stdout
    assert "web.container" in listing and "uses files/web/index.html" in listing
    unit = p.ok("show", "web1", "web").stdout
    assert (
        "# units/quadlet/web.container" in unit
        and "Image=registry.test:5000/bundle/web:1.0.0" in unit
    )
    assert "# files/web/index.html\nfirst from web1" in unit
    missing = p.run("show", "web1", "nope")
    assert missing.returncode == 2 and "has no unit 'nope'" in missing.stderr
