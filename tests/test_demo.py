"""`bundle demo` runs its whole narrated story against a throwaway server and cleans up."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.harness import host_problems


def test_demo_story() -> None:
    assert host_problems() == [], host_problems()
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    answers = [
        line.split("the server answers: ", 1)[1]
        for line in out.splitlines()
        if "the server answers: " in line
    ]
    assert answers == [
        "'Hello from generation one (demo)'",
        "'Hello from generation two (demo)'",
        "'Hello from generation one (demo)'",
    ]
    assert "restarted web.container; 1 unit left running untouched" in out
    assert "+Hello from generation two (demo)" in out
    assert "demo: rollback 2 -> 1: ok" in out
    assert out.rstrip().endswith("Tearing the demo server down ...")
    n = re.search(r"server up at 10\.200\.(\d+)\.2", out)
    assert n, out
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert f"bundle-t{n.group(1)}" not in namespaces  # the demo server is gone
