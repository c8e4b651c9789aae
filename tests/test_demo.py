"""`bundle demo` runs its whole narrated story against a throwaway server and cleans up."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

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


def bundle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_kept_demo_server_outlives_the_command_until_stopped() -> None:
    assert bundle("demo", "--stop").stderr.strip() == (
        "error: no kept demo server to stop (bundle demo --keep)"
    )
    result = bundle("demo", "--keep")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1] == "stop it with: bundle demo --stop"
        address = re.search(r"server up at (10\.200\.(\d+)\.2)", result.stdout)
        assert address, result.stdout
        namespace = f"bundle-t{address.group(2)}"
        # this process is gone; the server still answers
        with urllib.request.urlopen(f"http://{address.group(1)}:8080/", timeout=30) as answer:
            assert answer.read().decode().strip() == "Hello from generation one (demo)"
        again = bundle("demo", "--keep")
        assert again.returncode == 2 and again.stderr.strip() == (
            "error: a kept demo server is still running; stop it first (bundle demo --stop)"
        )
    finally:
        stop = bundle("demo", "--stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.strip() == f"stopped the demo server at {address.group(1)}"
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert namespace not in namespaces
