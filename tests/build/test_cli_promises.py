"""Small promises the `bundle` command makes: --version, --quiet, counts in words, a first
deploy called one, a misspelt command answered with the nearest one, the server's build times."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from activate.health import Health, Result
from builder.base.version import version
from builder.base.words import change, plural
from builder.deploy.deployer import name_failing_units
from tests.build.conftest import REPO, Project

STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[vars]
message = "hello"

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
ports = ["127.0.0.1:8080:80"]
configs = [{ template = "index.html.j2", mount = "/usr/share/nginx/html/index.html" }]
"""


@pytest.fixture
def web1(empty_project: Project) -> Project:
    empty_project.write("web1.toml", STACK)
    empty_project.write("templates/index.html.j2", "{{ vars.message }} from {{ host.name }}\n")
    return empty_project


def test_version_is_the_installed_distributions() -> None:
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert metadata.version("quadlet-bundle") == wanted
    result = Project(REPO).run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"bundle {wanted}\n", "")
    # a checkout run without installing it says so; without its pyproject.toml, it says that
    assert version("quadlet-bundle-not-installed") == f"{wanted} (source checkout)"
    missing = version("quadlet-bundle-not-installed", REPO / "no-such-pyproject.toml")
    assert missing.startswith("unknown")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("swich", "switch"), ("stauts", "status"), ("rolback", "rollback"), ("comple", "completion")],
)
def test_misspelt_command_is_one_line_with_the_nearest(
    web1: Project, typed: str, meant: str
) -> None:
    result = web1.run(typed, "web1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: unknown command {typed!r}; did you mean `bundle {meant}`?\n"


def test_unknown_command_never_suggests_a_hidden_one(web1: Project) -> None:
    for typed in ("__complet", "_complete", "__complete_"):
        result = web1.run(typed)
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert "__complete`" not in result.stderr, result.stderr
    nothing_near = web1.run("xyzzy")
    assert (nothing_near.returncode, nothing_near.stderr) == (
        2,
        "error: unknown command 'xyzzy'; `bundle --help` lists them\n",
    )
    nested = web1.run("secrets", "lst", "web1")
    assert (nested.returncode, nested.stderr) == (
        2,
        "error: unknown command 'lst'; did you mean `bundle secrets list`?\n",
    )
    # the completion scripts still reach the hidden command by its exact name
    assert web1.run("__complete", "hosts").stdout == "web1\n"


def test_quiet_success_prints_nothing(web1: Project, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    target = ["--target", str(srv)]

    def quiet(*args: str) -> None:
        result = web1.run(*args)
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == ("", ""), args

    quiet("-q", "check", "web1")
    quiet("build", "web1", "-q")
    quiet("--quiet", "build", "web1")  # up to date
    quiet("-q", "push", "web1", *target)
    quiet("-q", "activate", "web1", "--generation", "1", *target)
    web1.edit("web1.toml", '"hello"', '"hi"')
    quiet("-q", "switch", "web1", *target)
    quiet("-q", "rollback", "web1", *target)
    quiet("-q", "gc", "web1", "--keep", "1", *target)
    web1.write("web2.toml", STACK.replace("web1", "web2"))
    quiet("-q", "switch", "web1", "web2", "--target", f"{tmp_path}/fleet/{{host}}")
    quiet("-q", "init", str(tmp_path / "new"))
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  app:\n    image: docker.io/library/nginx:1.27.3\n")
    quiet("-q", "import", str(compose), "--host", "app1")
    assert (web1.stacks / "app1.toml").is_file()

    # what the user asked for still prints: data commands and --json
    status = web1.run("-q", "status", "web1", *target)
    assert status.stdout.startswith("web1: generation 1 ("), status.stdout
    assert "  rollback  2 -> 1  ok" in web1.run("-q", "log", "web1", *target).stdout
    assert "(active)" in web1.run("-q", "generations", "web1", "--remote", *target).stdout
    assert json.loads(web1.run("-q", "build", "web1", "--json").stdout)["generation"] == 2
    assert "web.container" in web1.run("-q", "diff", "web1").stdout

    # errors still print
    bad = web1.run("-q", "build", "nosuchhost")
    assert bad.returncode == 2 and bad.stderr.startswith("error: "), bad.stderr
    web1.edit("web1.toml", 'version = "1.27.3"', 'version = "latest"')
    fleet = web1.run("-q", "switch", "web1", "web2", "--target", f"{tmp_path}/fleet/{{host}}")
    assert fleet.returncode == 1 and fleet.stdout == ""
    assert "web1: FAILED: " in fleet.stderr and "1 of 2 hosts failed: web1" in fleet.stderr


def test_counts_read_as_words() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "unused file") == "1 unused file"
    assert plural(3, "entry", "entries") == "3 entries"


def test_counts_in_messages(web1: Project, tmp_path: Path) -> None:
    assert web1.run("check", "web1").stdout == "web1: ok, 1 unit, 1 image\n"
    assert ", 1 unit, archive " in web1.run("build", "web1").stdout
    srv = ["--target", str(tmp_path / "srv")]
    pushed = web1.run("push", "web1", *srv).stdout
    assert re.search(r": \d+ of \d+ files sent, ", pushed), pushed
    first = web1.run("switch", "web1", *srv).stdout
    assert "; 0 units left running untouched;" in first, first
    web1.write("templates/index.html.j2", "{{ vars.message }} to {{ host.name }}\n")
    web1.run("build", "web1")
    stat = web1.run("diff", "web1", "--stat").stdout
    assert stat.endswith("  1 file changed, 1 insertion(+), 1 deletion(-)\n"), stat
    web1.run("switch", "web1", *srv)
    web1.write("templates/index.html.j2", "{{ vars.message }} at {{ host.name }}\n")
    web1.run("switch", "web1", *srv)
    gc = web1.run("gc", "web1", "--keep", "1", *srv)
    assert gc.stdout.startswith("web1: removed 1 generation on the server (1), 1 unused file; "), (
        gc.stdout
    )
    assert gc.stdout.endswith("; 1 local generation (1)\n"), gc.stdout


def test_first_deploy_is_called_one(web1: Project, tmp_path: Path) -> None:
    srv = ["--target", str(tmp_path / "srv")]
    assert change(None, 1) == "to 1 (first deploy)" and change(6, 7) == "6 -> 7"
    plan = web1.run("plan", "web1", *srv).stdout
    assert plan.startswith("web1: activating 1 (first deploy) would:"), plan
    first = web1.run("switch", "web1", *srv).stdout
    assert first.splitlines()[0] == "web1: switch to 1 (first deploy): ok", first
    status = web1.run("status", "web1", *srv).stdout
    assert " activate to 1 (first deploy): ok\n" in status, status
    web1.edit("web1.toml", '"hello"', '"hi"')
    second = web1.run("switch", "web1", *srv).stdout
    assert second.splitlines()[0] == "web1: switch 1 -> 2: ok", second
    log = web1.run("log", "web1", *srv).stdout.splitlines()
    assert "  to 1 (first deploy)  ok" in log[0] and "  1 -> 2  ok" in log[1], log
    for text in (first, status, second, "\n".join(log)):
        assert "nothing" not in text and "None" not in text and "- -> " not in text
    # JSON keeps the raw value
    entries = json.loads(web1.run("log", "web1", *srv, "--json").stdout)
    assert (entries[0]["from"], entries[0]["to"]) == (None, 1)


def test_remote_generations_show_when_each_was_built(web1: Project, tmp_path: Path) -> None:
    srv = ["--target", str(tmp_path / "srv")]
    web1.run("switch", "web1", *srv)
    web1.edit("web1.toml", '"hello"', '"hi"')
    web1.run("switch", "web1", *srv)
    local = {
        r["generation"]: r["built_at"]
        for r in json.loads(web1.run("generations", "web1", "--json").stdout)
    }
    remote = json.loads(web1.run("generations", "web1", "--remote", *srv, "--json").stdout)
    assert {r["generation"]: r["built_at"] for r in remote} == local
    assert all(local.values())
    text = web1.run("generations", "web1", "--remote", *srv).stdout.splitlines()
    assert text[0].split() == ["GEN", "HASH", "BUILT", "AT", "UNITS"]
    assert text[1].split()[2] == local[1] and text[2].split()[2] == local[2], text

    # built on another machine (or its build log gone): unknown, not empty or made up
    (web1.bundles / "web1/builds.jsonl").unlink()
    remote = json.loads(web1.run("generations", "web1", "--remote", *srv, "--json").stdout)
    assert [r["built_at"] for r in remote] == [None, None]
    text = web1.run("generations", "web1", "--remote", *srv).stdout.splitlines()
    assert [line.split()[2] for line in text[1:]] == ["-", "-"], text


def test_rolled_back_line_names_the_failing_unit_first() -> None:
    # the report as the switcher writes it (activate/health.py), for a generation of two units
    services = {"web.container": "web.service", "crashy.container": "crashy.service"}
    results = (
        Result("*", "unit", "every unit is active", False, ""),
        Result("crashy.container", "unit", "crashy.service stays up", False, "restarted 3 times"),
        Result("web.container", "http", "GET http://127.0.0.1:8080/", False, "answered 500"),
        Result("web.container", "tcp", "127.0.0.1:8080 accepts", True, "connected"),
    )
    health = Health(False, 8.0, 8.0, 2.0, results)
    report = {"result": "rolled back", "health": health.as_json()}
    cause = f"activating generation 2 failed: {health.summary()}"
    line = name_failing_units(f"web1: rolled back to generation 1: {cause}", report, services)
    assert line == (
        "web1: rolled back to generation 1: crashy.service did not keep running, "
        f"web.service failed its health check; {cause}"
    )
    first = name_failing_units(f"web1: rolled back to no generation: {cause}", report, services)
    assert first.startswith("web1: rolled back to no generation: crashy.service did not ")
    # nothing named in the report (a dead-man timeout), or not rolled back: the line as it was
    waiting = {"result": "rolled back", "health": Health(True, 1.0, 8.0, 2.0, ()).as_json()}
    deadman = "web1: rolled back: generation 2 could not be confirmed over a new SSH connection"
    assert name_failing_units(deadman, waiting, services) == deadman
    kept = {**report, "result": "unhealthy"}
    assert name_failing_units(f"web1: rolled back to generation 1: {cause}", kept, services) == (
        f"web1: rolled back to generation 1: {cause}"
    )


def test_a_switcher_reply_that_does_not_fit_is_one_line(web1: Project, tmp_path: Path) -> None:
    # the rollback runs the active generation's own switcher: here, one that answers nonsense
    srv = tmp_path / "srv"
    assert web1.run("-q", "switch", "web1", "--target", str(srv)).returncode == 0
    (current,) = srv.glob("**/current")
    (current / "activate" / "__main__.py").write_text('print(\'{"to": "two", "warnings": []}\')\n')
    result = web1.run("rollback", "web1", "--target", str(srv))
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: web1: the switcher's `rollback` printed a report"), lines
    assert "`to` must be an integer, not the string 'two'" in lines[0], lines
