"""A push draws its progress on a terminal, and only there."""

from __future__ import annotations

import shlex
import subprocess
import sys

from tests.server.conftest import DeployProject


def test_push_progress_on_a_terminal_only(deploy_project: DeployProject) -> None:
    p = deploy_project
    p.ok("build", "web1")
    command = shlex.join([sys.executable, "-m", "builder.cli", "push", "web1"])
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(p.home), "TERM": "xterm"}
    # `script` gives the command a real pseudo-terminal, as a person at a shell has
    on_tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        cwd=p.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert on_tty.returncode == 0, on_tty.stdout
    assert "\x1b[Kweb1: pushing generation 1: " in on_tty.stdout  # redrawn in place (erase line)
    assert "(100%)" in on_tty.stdout and "/s, 0:00 left" in on_tty.stdout

    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    p.ok("build", "web1")
    piped = p.run("push", "web1")
    assert piped.returncode == 0
    assert "pushing generation" not in piped.stdout + piped.stderr
    assert piped.stdout.startswith("web1: pushed generation 2")
