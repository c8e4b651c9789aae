"""The server story on a real server: push, activate, switch, status, rollback, gc."""

from __future__ import annotations

from tests.server.conftest import DeployProject


def test_push_activate_switch_rollback_gc(deploy_project: DeployProject) -> None:
    p = deploy_project
    built = p.json("build", "web1")
    assert built["generation"] == 1

    pushed = p.json("push", "web1")
    # every file but the switcher's: the switcher installed for the push already holds those
    assert 0 < pushed["objects_sent"] < pushed["objects_total"] and pushed["switcher_sent"]
    assert pushed["bytes_sent"] > 0
    status = p.json("status", "web1")
    assert status["current"] is None  # pushed, not active

    again = p.json("push", "web1", "--generation", "1")
    assert again["already_present"] and again["objects_sent"] == 0

    out = p.ok("activate", "web1", "--generation", "1").stdout
    assert out.startswith("web1: activate to 1 (first deploy): ok"), out
    assert p.fetch(8080) == "first from web1\n"
    assert p.fetch(8081).strip()  # the image's own page
    web_pid, other_pid = p.main_pid("web.service"), p.main_pid("other.service")

    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    switched = p.json("switch", "web1")
    assert switched["from"] == 1 and switched["to"] == 2 and switched["result"] == "ok"
    assert switched["plan"]["restart"] == ["web.container"]
    assert switched["push"]["objects_sent"] == 1  # only the changed page travels
    assert p.fetch(8080) == "second from web1\n"
    assert p.main_pid("other.service") == other_pid  # untouched: same process
    assert p.main_pid("web.service") != web_pid

    status = p.json("status", "web1")
    assert status["current"] == 2
    assert status["units"]["web.container"]["active"] == "active"
    assert status["last"]["result"] == "ok"
    text = p.ok("status", "web1").stdout
    assert text.startswith("web1: generation 2 (")

    remote = p.json("generations", "web1", "--remote")
    assert [(g["generation"], g["active"]) for g in remote] == [(1, False), (2, True)]

    other_pid = p.main_pid("other.service")
    back = p.json("rollback", "web1")
    assert back["to"] == 1 and back["result"] == "ok"
    assert p.fetch(8080) == "first from web1\n"
    assert p.main_pid("other.service") == other_pid

    # a third generation, then gc keeping one: the active (1) and the previous (2) stay
    p.edit("web1.toml", 'message = "second"', 'message = "third"')
    p.ok("build", "web1")
    p.ok("push", "web1")
    gc = p.json("gc", "web1", "--keep", "1")
    remaining = [g["generation"] for g in p.json("generations", "web1", "--remote")]
    assert 1 in remaining and 2 in remaining and 3 in remaining, (gc, remaining)
    assert p.fetch(8080) == "first from web1\n"
