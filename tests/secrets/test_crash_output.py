"""A container that crashes printing a secret value: the deployer's error and `bundle log`
show `[secret NAME]` in its place, never the value (the switcher redacts its last lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.conftest import make_deploy_project

from .conftest import STACK, VALUES, SecretsProject, make_secrets_project

LEAKY = """\
[containers.leaky]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
secrets = [{ name = "db_password", env = "DB_PASSWORD" }]
command = ["sh", "-c", "echo connecting; env | grep PASSWORD; exit 1"]

"""


def project_for(tmp_path: Path, target: Target) -> SecretsProject:
    stack = STACK.replace("web1.example.org", "web1-test")
    deploy = make_deploy_project(tmp_path, target, stack)
    p = make_secrets_project(deploy.root, stack)
    p.env["HOME"] = str(deploy.home)  # its ~/.ssh/config reaches the test server
    return p


def test_a_crashing_container_that_prints_a_secret_shows_its_name_only(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    p = project_for(tmp_path, target)
    p.set_all()
    p.ok("switch", "web1")
    stack = p.stacks / "web1.toml"
    stack.write_text(stack.read_text().replace("[containers.other]", LEAKY + "[containers.other]"))

    result = p.run("switch", "web1")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: web1: rolled back to generation 1: "), first
    assert "leaky.service keeps crashing: exited " in first, first
    assert "last log lines: " in first and "DB_PASSWORD=[secret db_password]" in first, first
    assert VALUES["db_password"] not in result.stdout + result.stderr

    log = p.ok("log", "web1")
    assert "DB_PASSWORD=[secret db_password]" in log.stdout, log.stdout
    assert VALUES["db_password"] not in log.stdout + log.stderr
    entries = p.json("log", "web1")
    assert [e["result"] for e in entries if "[secret db_password]" in e.get("message", "")] == [
        "rolled back"
    ], entries
    assert VALUES["db_password"] not in str(entries)
