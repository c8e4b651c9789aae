"""The safety keys of a stack: checks, timeouts, stateful dumps and on_activation scripts.

They are validated with one line per problem like every other key, and land in the manifest
where the switcher reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.build.conftest import Project

STACK = """\
[host]
name = "web1"
address = "web1.example.org"
health_timeout = 20
health_settle = 1
confirm_timeout = 15

[volumes.db-data]

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
ports = ["127.0.0.1:8080:80"]
checks = [
  { http = "http://127.0.0.1:8080/", status = 200, body = "welcome" },
  { tcp = "127.0.0.1:8080", timeout = 2 },
  { command = "test -S /run/podman/podman.sock" },
]

[containers.db]
image = "docker.io/library/postgres"
version = "16.6-alpine"
volumes = ["db-data:/var/lib/postgresql/data", "/srv/exports:/exports"]
stateful = true
dump = "pg_dumpall -U postgres"
restore = "psql -U postgres"

[scripts.firewall]
on_activation = true
run = "nft -f /etc/nftables.d/web.nft"
stop = "nft delete table inet web"
"""


@pytest.fixture
def p(tmp_path: Path) -> Project:
    project = Project(tmp_path / "project")
    project.write("web1.toml", STACK)
    return project


def manifest(p: Project) -> dict:
    result = p.run("build", "web1", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads((Path(json.loads(result.stdout)["path"]) / "manifest.json").read_text())


def test_checks_timeouts_and_state_reach_the_manifest(p: Project) -> None:
    m = manifest(p)
    assert m["deploy"] == {"health_timeout": 20, "health_settle": 1, "confirm_timeout": 15}
    web = m["units"]["web.container"]
    assert web["checks"] == [
        {"http": "http://127.0.0.1:8080/", "status": 200, "body": "welcome", "timeout": 5},
        {"tcp": "127.0.0.1:8080", "timeout": 2},
        {"command": "test -S /run/podman/podman.sock", "timeout": 5},
    ]
    assert "state" not in web
    db = m["units"]["db.container"]
    assert "checks" not in db
    # named volumes only: a host path is the admin's to back up
    assert db["state"] == {
        "container": "db",
        "volumes": ["db-data"],
        "dump": "pg_dumpall -U postgres",
        "restore": "psql -U postgres",
    }


def test_changing_a_check_makes_a_generation_but_restarts_nothing(p: Project) -> None:
    first = manifest(p)
    p.edit("web1.toml", 'body = "welcome"', 'body = "hello"')
    second = manifest(p)
    assert second["generation"] == first["generation"] + 1
    for key, unit in first["units"].items():
        assert second["units"][key]["closure"] == unit["closure"], key


def test_defaults(p: Project) -> None:
    for key in ("health_timeout = 20\n", "health_settle = 1\n", "confirm_timeout = 15\n"):
        p.edit("web1.toml", key, "")
    m = manifest(p)
    assert m["deploy"] == {"health_timeout": 60, "health_settle": 2, "confirm_timeout": 30}
    check = m["units"]["web.container"]["checks"][0]
    assert check["status"] == 200


def test_on_activation_script_runs_at_activation_and_undoes_itself_on_stop(p: Project) -> None:
    m = manifest(p)
    unit = m["units"]["firewall.service"]
    assert unit["enable"] is True
    assert sorted(unit["files"]) == [
        "scripts/firewall.sh",
        "scripts/firewall.stop.sh",
        "units/systemd/firewall.service",
    ]
    folder = next(d for d in (p.bundles / "web1").glob("1-*") if d.is_dir())
    text = (folder / "units/systemd/firewall.service").read_text()
    assert "Type=oneshot\nRemainAfterExit=yes\n" in text
    assert "ExecStart=/var/lib/bundle/current/scripts/firewall.sh\n" in text
    assert "ExecStop=/var/lib/bundle/current/scripts/firewall.stop.sh\n" in text
    assert "[Install]\nWantedBy=multi-user.target\n" in text
    assert (folder / "scripts/firewall.stop.sh").read_text().endswith("nft delete table inet web\n")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '{ tcp = "127.0.0.1:8080", timeout = 2 }',
            '{ tcp = "127.0.0.1:8080", http = "http://127.0.0.1:8080/" }',
            "web1.toml:14: containers.web.checks[1]: give exactly one of http, tcp or command",
        ),
        (
            '{ tcp = "127.0.0.1:8080", timeout = 2 }',
            "{ timeout = 2 }",
            "containers.web.checks[1]: give exactly one of http, tcp or command",
        ),
        (
            'http = "http://127.0.0.1:8080/"',
            'http = "127.0.0.1:8080/"',
            "containers.web.checks[0].http: '127.0.0.1:8080/' is not an http:// or https:// URL",
        ),
        (
            'http = "http://127.0.0.1:8080/"',
            'http = "http://127.0.0.1:99999/"',
            "containers.web.checks[0].http: 'http://127.0.0.1:99999/' has a port that is not 1-65535",
        ),
        (
            "status = 200",
            "status = 2000",
            "containers.web.checks[0].status: must be an HTTP status between 100 and 599",
        ),
        (
            '{ tcp = "127.0.0.1:8080", timeout = 2 }',
            '{ tcp = "127.0.0.1:8080", body = "x" }',
            "containers.web.checks[1].body: body goes with an http check",
        ),
        (
            'tcp = "127.0.0.1:8080"',
            'tcp = "127.0.0.1"',
            "containers.web.checks[1].tcp: '127.0.0.1': write HOST:PORT, e.g. 127.0.0.1:5432",
        ),
        (
            'command = "test -S /run/podman/podman.sock"',
            'command = " "',
            "containers.web.checks[2].command: is empty",
        ),
        (
            "timeout = 2 }",
            "timeout = 0 }",
            "containers.web.checks[1].timeout: must be between 1 and 300 seconds",
        ),
        (
            "timeout = 2 }",
            "timeout = 2, port = 1 }",
            "containers.web.checks[1].port: unknown key",
        ),
        (
            "health_timeout = 20",
            "health_timeout = 0",
            "web1.toml:4: host.health_timeout: must be between 1 and 3600 seconds",
        ),
        (
            "confirm_timeout = 15",
            'confirm_timeout = "15s"',
            "host.confirm_timeout: must be an integer",
        ),
        (
            "confirm_timeout = 15",
            "confirm_timeout = 15\ncommand_timeout = 0",
            "host.command_timeout: must be between 1 and 3600 seconds",
        ),
        (
            'restore = "psql -U postgres"\n',
            "",
            "containers.db.restore: give dump and restore together",
        ),
        (
            "stateful = true\n",
            "",
            "containers.db.dump: a dump command is for stateful containers: set stateful = true",
        ),
        (
            "on_activation = true\n",
            "",
            "scripts.firewall.stop: stop undoes an on_activation script: set on_activation = true",
        ),
        (
            "on_activation = true\n",
            'on_activation = true\non_calendar = "daily"\n',
            "scripts.firewall.on_activation: a script runs on_calendar or on_activation, not both",
        ),
    ],
)
def test_bad_safety_keys_are_one_line_each(p: Project, old: str, new: str, expected: str) -> None:
    p.edit("web1.toml", old, new)
    result = p.run("build", "web1")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert any(expected in line for line in lines), result.stderr
    assert lines[-1].endswith("nothing was built or changed")
    assert not (p.bundles / "web1").exists()
