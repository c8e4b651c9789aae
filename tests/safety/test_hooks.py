"""Deploy hooks on a real server: pre-hooks run before anything changes (a one-off container
among them), post-hooks once the new generation is healthy; a failing pre-hook stops the switch
with nothing changed, a failing post-hook rolls back. Flag files on the server make a hook
fail, so every switch here uses the same [hooks] table."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import SAFE_STACK, STATE, current, history, safe_project
from tests.server.conftest import DeployProject

LOG = "/var/lib/hook-test.log"
HOOKS = f"""
[hooks]
pre = [
  'podman run --rm registry.test:5000/bundle/web:1.0.0 echo migrated by a one-off container',
  'echo "pre $BUNDLE_FROM->$BUNDLE_TO running $(readlink {STATE}/current)" >> {LOG}',
  'if [ -e /tmp/fail-pre ]; then echo "schema is locked"; exit 5; fi',
]
post = [
  'echo "post $BUNDLE_FROM->$BUNDLE_TO running $(readlink {STATE}/current)" >> {LOG}',
  'if [ -e /tmp/fail-post ]; then echo "smoke test failed" >&2; exit 4; fi',
]
timeout = 120
"""


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    target.ssh(f"rm -f {LOG} /tmp/fail-pre /tmp/fail-post")
    return safe_project(tmp_path_factory.mktemp("hooks"), target, SAFE_STACK + HOOKS)


def log(target: Target) -> list[str]:
    return target.ssh(f"cat {LOG}").stdout.splitlines()


def test_hooks_run_before_and_after_the_switch_and_say_what_they_printed(
    p: DeployProject,
) -> None:
    first = p.ok("switch", "web1")
    lines = first.stdout.splitlines()
    assert lines[0] == "web1: switch to 1 (first deploy): ok", first.stdout
    pre = [ln for ln in lines if "pre-hook 1 `podman run --rm" in ln]
    assert len(pre) == 1 and ": ok in " in pre[0], first.stdout
    assert "    | migrated by a one-off container" in lines, first.stdout
    assert any(ln.startswith("  post-hook 2 `if [ -e /tmp/fail-post ]") for ln in lines)
    # the pre-hooks saw nothing running yet, the post-hooks the new generation
    assert log(p.target) == ["pre ->1 running ", f"post ->1 running generations/{first_folder(p)}"]

    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    report = p.json("switch", "web1")
    assert report["result"] == "ok"
    ran = [(h["phase"], h["number"], h["exit_code"]) for h in report["hooks"]]
    assert ran == [("pre", 1, 0), ("pre", 2, 0), ("pre", 3, 0), ("post", 1, 0), ("post", 2, 0)]
    assert report["hooks"][0]["output"] == "migrated by a one-off container"
    assert log(p.target)[-2:] == [
        f"pre 1->2 running generations/{first_folder(p)}",
        f"post 1->2 running generations/{folder_of(p, 2)}",
    ]
    assert p.fetch(8080) == "second from web1\n"


def first_folder(p: DeployProject) -> str:
    return folder_of(p, 1)


def folder_of(p: DeployProject, n: int) -> str:
    folders = (p.bundles / "web1").iterdir()
    (found,) = [d.name for d in folders if d.is_dir() and d.name.startswith(f"{n}-")]
    return found


def test_a_failing_pre_hook_stops_the_switch_before_anything_changes(p: DeployProject) -> None:
    before, lines_before = current(p.target), len(history(p.target))
    p.target.ssh("touch /tmp/fail-pre")
    p.edit("web1.toml", 'message = "second"', 'message = "blocked"')
    try:
        result = p.run("switch", "web1")
    finally:
        p.target.ssh("rm -f /tmp/fail-pre")
        p.edit("web1.toml", 'message = "blocked"', 'message = "second"')
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        'error: web1: pre-hook 3 `if [ -e /tmp/fail-pre ]; then echo "schema is locked"; '
        f"exit 5; fi` exited with 5 (last output: schema is locked); nothing changed, "
        f"generation {before} stays active"
    ], result.stderr
    assert current(p.target) == before
    assert len(history(p.target)) == lines_before
    assert not any(ln.startswith("post ") and f"->{before + 1} " in ln for ln in log(p.target))
    assert p.fetch(8080) == "second from web1\n"


def test_a_failing_post_hook_rolls_back_like_a_failed_gate(p: DeployProject) -> None:
    before = current(p.target)
    p.target.ssh("touch /tmp/fail-post")
    p.edit("web1.toml", 'message = "second"', 'message = "unsmoked"')
    try:
        result = p.run("switch", "web1", "--json")
    finally:
        p.target.ssh("rm -f /tmp/fail-post")
        p.edit("web1.toml", 'message = "unsmoked"', 'message = "second"')
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), first
    assert "post-hook 2 `if [ -e /tmp/fail-post ]" in first and "exited with 4" in first
    assert "(last output: smoke test failed)" in first
    import json

    report = json.loads(result.stdout)
    assert report["result"] == "rolled back"
    assert [h["exit_code"] for h in report["hooks"] if h["phase"] == "post"] == [0, 4]
    assert current(p.target) == before
    assert p.fetch(8080) == "second from web1\n"
    assert history(p.target)[-1]["result"] == "rolled back"
