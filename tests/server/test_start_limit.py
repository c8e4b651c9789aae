"""Switching back and forth faster than systemd's start limit allows (5 starts in 10 s).

Each rollback restarts the web container and activates a generation that ran a second ago,
so this also covers a generation activated again before systemd collected its last run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

FAST_STACK = WEB_STACK.replace(
    'address = "web1-test"', 'address = "web1-test"\nhealth_settle = 0\nconfirm_timeout = 0'
)


def test_quick_switches_and_rollbacks_are_not_stopped_by_the_start_limit(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    project: DeployProject = make_deploy_project(tmp_path, target, FAST_STACK)
    project.ok("switch", "web1")
    project.edit("web1.toml", 'message = "first"', 'message = "second"')
    project.ok("switch", "web1")
    for n in range(8):
        result = project.run("rollback", "web1", "--to", "1" if n % 2 == 0 else "2")
        assert result.returncode == 0, f"rollback {n + 1}:\n{result.stdout}\n{result.stderr}"
        expected = "first" if n % 2 == 0 else "second"
        assert project.fetch(8080).startswith(expected)
    restarts = target.ssh("journalctl --no-pager -u web.service | grep -c 'Started web.service'")
    assert int(restarts.stdout.strip()) >= 10  # more starts than the start limit allows
