"""Several hosts in one command, against folders standing in for servers (files-only mode)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.build.conftest import Project

STACK = """\
[host]
name = "{name}"
address = "{name}.example.org"
tags = [{tags}]

[vars]
message = "hello"

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
ports = ["127.0.0.1:8080:80"]
configs = [{{ template = "index.html.j2", mount = "/usr/share/nginx/html/index.html" }}]
"""


def fleet(p: Project, names: dict[str, str]) -> None:
    for name, tags in names.items():
        p.write(f"{name}.toml", STACK.format(name=name, tags=tags))
    p.write("templates/index.html.j2", "{{ vars.message }} from {{ host.name }}\n")


def current(root: Path, host: str) -> str | None:
    link = root / host / "var/lib/bundle/current"
    return str(link.readlink()) if link.is_symlink() else None


def test_switch_by_tag_in_parallel_with_a_summary(empty_project: Project, tmp_path: Path) -> None:
    p = empty_project
    fleet(p, {"web1": '"edge"', "web2": '"edge"', "web3": '"edge", "eu"', "db1": '"data"'})
    srv = tmp_path / "srv"
    result = p.run("switch", "@edge", "--target", f"{srv}/{{host}}", "--parallel", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    for host in ("web1", "web2", "web3"):
        assert current(srv, host) is not None and current(srv, host).startswith("generations/1-")
        assert f"{host}: switch to 1 (first deploy): ok" in result.stdout
    assert current(srv, "db1") is None
    table = result.stdout.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["HOST", "FROM", "TO", "RESULT", "TIME"]
    assert [row.split()[:4] for row in table[1:]] == [
        [h, "-", "1", "ok"] for h in ("web1", "web2", "web3")
    ]

    rows = json.loads(p.run("status", "--all", "--target", f"{srv}/{{host}}", "--json").stdout)
    assert [(r["host"], r["ok"]) for r in rows] == [
        ("db1", True),
        ("web1", True),
        ("web2", True),
        ("web3", True),
    ]
    assert rows[0]["report"]["current"] is None and rows[1]["report"]["current"] == 1


def test_one_failing_host_does_not_stop_the_others(empty_project: Project, tmp_path: Path) -> None:
    p = empty_project
    fleet(p, {"web1": '"edge"', "web2": '"edge"', "web3": '"edge"'})
    p.edit("web2.toml", 'version = "1.27.3"', 'version = "latest"')
    srv = tmp_path / "srv"
    result = p.run("switch", "web1", "web2", "web3", "--target", f"{srv}/{{host}}")
    assert result.returncode == 1
    assert "web2: FAILED: " in result.stdout and "'latest' moves under you" in result.stdout
    assert current(srv, "web1") and current(srv, "web3") and not current(srv, "web2")
    assert "error: 1 of 3 hosts failed: web2" in result.stderr

    srv2 = tmp_path / "srv2"
    fast = p.run(
        "switch",
        "web2",
        "web1",
        "web3",
        "--target",
        f"{srv2}/{{host}}",
        "--parallel",
        "1",
        "--fail-fast",
    )
    assert fast.returncode == 1
    assert not current(srv2, "web1") and not current(srv2, "web3")
    assert "skipped after an earlier failure (--fail-fast)" in fast.stderr


def test_host_selection_errors(empty_project: Project, tmp_path: Path) -> None:
    p = empty_project
    fleet(p, {"web1": '"edge"', "web2": '"edge"'})
    for args, message in (
        (["switch", "@nope"], "no host has the tag 'nope'"),
        (["switch", "web9"], "no stack for host 'web9'"),
        (["switch"], "name at least one host, a @tag, or --all"),
        (
            ["switch", "web1", "web2", "--target", str(tmp_path)],
            "--target with several hosts must contain {host}",
        ),
    ):
        result = p.run(*args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
