"""`bundle switch --batch` and `--canary` against folders standing in for servers: the batches,
the canary's question on a terminal, and bad input refused before any host changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.build.conftest import Project
from tests.build.test_fleet import current, fleet

HOSTS = {"web1": '"edge"', "web2": '"edge"', "web3": '"edge"', "web4": '"edge"'}


def on_a_terminal(p: Project, answer: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """`bundle ARGS` with a terminal on stdin that answers `answer` to the question."""
    main, side = os.openpty()
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(p.root)}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=p.root,
            env=env,
            stdin=side,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(main, answer)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(side)
        os.close(main)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_batches_by_share_and_a_canary_that_asks(empty_project: Project, tmp_path: Path) -> None:
    p = empty_project
    fleet(p, HOSTS)
    srv = f"{tmp_path}/srv/{{host}}"
    result = p.run("switch", "@edge", "--batch", "50%", "--target", srv, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is True and report["stopped"] is None
    assert [[h["host"] for h in b["hosts"]] for b in report["batches"]] == [
        ["web1", "web2"],
        ["web3", "web4"],
    ]
    assert {h["runs"] for b in report["batches"] for h in b["hosts"]} == {1}

    p.edit("web3.toml", 'message = "hello"', 'message = "again"')
    p.edit("web1.toml", 'message = "hello"', 'message = "again"')
    no = on_a_terminal(p, b"n\n", "switch", "@edge", "--canary", "web3", "--target", srv)
    assert no.returncode == 1, no.stdout + no.stderr
    assert "web3 switched; continue with 3 hosts? [y/N]" in no.stderr
    assert no.stderr.strip().endswith(
        "error: stopped after batch 1 of 2: not confirmed after the canary; 3 hosts not reached"
    )
    assert "web3: rollback 2 -> 1: ok" in no.stdout
    assert current(tmp_path / "srv", "web3").startswith("generations/1-")  # type: ignore[union-attr]
    assert current(tmp_path / "srv", "web1").startswith("generations/1-")  # type: ignore[union-attr]

    yes = on_a_terminal(p, b"y\n", "switch", "@edge", "--canary", "web3", "--target", srv)
    assert yes.returncode == 0, yes.stdout + yes.stderr
    rows = [r.split() for r in yes.stdout.split("\n\n")[-1].splitlines()[1:-1]]
    assert rows == [
        ["web3", "1", "1", "2", "2", "switched"],
        ["web1", "2", "1", "2", "2", "switched"],
        ["web2", "2", "1", "1", "1", "switched"],
        ["web4", "2", "1", "1", "1", "switched"],
    ]
    assert yes.stdout.rstrip().endswith("all 4 hosts switched in 2 batches")

    # --no-rollback: the rollout stops all the same, and the canary stays where it is
    p.edit("web2.toml", 'message = "hello"', 'message = "third"')
    args = ("switch", "@edge", "--canary", "web2", "--no-rollback", "--target", srv)
    kept = on_a_terminal(p, b"n\n", *args)
    assert kept.returncode == 1, kept.stdout + kept.stderr
    assert "rollback" not in kept.stdout
    assert current(tmp_path / "srv", "web2").startswith("generations/2-")  # type: ignore[union-attr]


def test_bad_rolling_input_is_one_line_before_any_host_changes(
    empty_project: Project, tmp_path: Path
) -> None:
    p = empty_project
    fleet(p, HOSTS)
    srv = f"{tmp_path}/srv/{{host}}"
    for args, message in (
        (["--batch", "0"], "--batch '0': give a number of hosts (--batch 2) or a share of them"),
        (["--batch", "150%"], "--batch '150%': give a number of hosts"),
        (["--batch", "two"], "--batch 'two': give a number of hosts"),
        (["--canary", "web9", "--canary-wait", "1m"], "--canary web9: not one of the hosts"),
        (["--canary", "web1", "--canary-wait", "soon"], "--canary-wait 'soon': give how long"),
        (["--canary-wait", "5m"], "--canary-wait needs --canary HOST"),
        (
            ["--canary", "web1"],
            "--canary asks before switching the rest, and there is no terminal to answer; "
            "give --canary-wait 5m",
        ),
    ):
        result = p.run("switch", "@edge", *args, "--target", srv)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""

    # a stack that does not build, in the last batch: refused before the first batch
    p.edit("web4.toml", 'version = "1.27.3"', 'version = "latest"')
    result = p.run("switch", "@edge", "--batch", "1", "--target", srv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'latest' moves under you" in result.stderr and "Traceback" not in result.stderr
    assert all(current(tmp_path / "srv", h) is None for h in HOSTS)
