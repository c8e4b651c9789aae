"""Dead-man confirmation on a real server: the server rolls back by itself unless the deployer
proves, over a NEW SSH connection, that the new generation leaves it reachable.

The last test deploys a generation that really cuts the deployer off: a script run at
activation adds an nftables rule dropping new connections to port 22 (established ones keep
working) and removes it when it is stopped. The deploy cannot confirm, says "rolled back",
and the server goes back to the previous generation, whose activation stops that script, and
answers SSH again.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import STATE, current, history, safe_project, wait_reachable
from tests.server.conftest import DeployProject

CUTOFF = """
[scripts.cutoff]
on_activation = true
run = '''
nft add table inet cutoff
nft add chain inet cutoff input '{ type filter hook input priority -10; policy accept; }'
nft add rule inet cutoff input tcp dport 22 'tcp flags & (syn | ack) == syn' drop
'''
stop = "nft delete table inet cutoff"
"""


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = safe_project(tmp_path_factory.mktemp("deadman"), target)
    project.ok("switch", "web1")
    return project


def switcher(p: DeployProject, gen: int, command: str, check: bool = True) -> Any:
    folder = p.target.ssh(f"ls -d {STATE}/generations/{gen}-*").stdout.strip()
    return p.target.ssh(
        f"cd {folder} && python3 -B -m activate {command} --state {STATE}", check=check
    )


def pushed_generation(p: DeployProject, message: str) -> int:
    stack = p.stacks / "web1.toml"
    stack.write_text(re.sub(r'message = "[^"]*"', f'message = "{message}"', stack.read_text()))
    p.ok("build", "web1")
    return int(p.json("push", "web1")["generation"])


def test_nobody_confirms_and_the_server_rolls_back_by_itself(p: DeployProject) -> None:
    before = current(p.target)
    gen = pushed_generation(p, "unconfirmed")
    started = switcher(p, gen, f"activate --generation {gen} --detach --confirm-timeout 6")
    waiting = json.loads(started.stdout)
    assert waiting["phase"] == "confirm" and 0 < waiting["confirm_seconds_left"] <= 6
    assert waiting["to"] == gen and waiting["health"]["passed"] is True
    assert current(p.target) == gen  # active while it waits
    assert p.fetch(8080) == "unconfirmed from web1\n"
    time.sleep(9)  # nobody confirms
    assert current(p.target) == before
    assert p.fetch(8080) == "first from web1\n"
    last = history(p.target)[-1]
    assert (
        last["result"] == "rolled back"
        and f"generation {gen} was not confirmed within 6 s" in (last["message"])
    )
    # a confirmation after the deadline is told so, with the final report
    late = switcher(p, gen, f"confirm --run {waiting['run']}", check=False)
    assert late.returncode == 1
    assert "rolled back to generation" in late.stderr and "not confirmed" in late.stderr
    assert json.loads(late.stdout)["result"] == "rolled back"


def test_confirmed_in_time_stays(p: DeployProject) -> None:
    gen = pushed_generation(p, "confirmed")
    waiting = json.loads(
        switcher(p, gen, f"activate --generation {gen} --detach --confirm-timeout 20").stdout
    )
    final = json.loads(switcher(p, gen, f"confirm --run {waiting['run']}").stdout)
    assert final["result"] == "ok" and final["confirmed"] is True
    time.sleep(1)
    assert current(p.target) == gen
    assert history(p.target)[-1]["result"] == "ok"
    assert p.fetch(8080) == "confirmed from web1\n"


def test_deploy_that_cuts_off_ssh_is_rolled_back_and_the_server_answers_again(
    p: DeployProject,
) -> None:
    before, page = current(p.target), p.fetch(8080)
    stack = p.stacks / "web1.toml"
    saved = stack.read_text()
    stack.write_text(saved + CUTOFF)
    t0 = time.monotonic()
    try:
        result = p.run("switch", "web1", "--confirm-timeout", "15")
    finally:
        stack.write_text(saved)
    took = time.monotonic() - t0
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: web1: rolled back: generation "), first
    assert "could not be confirmed over a new SSH connection" in first
    assert f"rolls back to generation {before} by itself" in first
    assert took < 300, took  # a hang guard: the order of events is asserted above

    back_after = wait_reachable(p.target, 60)
    assert current(p.target) == before
    last = history(p.target)[-1]
    assert last["action"] == "activate" and last["result"] == "rolled back"
    assert "was not confirmed within 15 s" in last["message"]
    assert "cutoff" not in p.target.ssh("nft list tables").stdout
    assert (
        p.target.ssh("systemctl is-active cutoff.service", check=False).stdout.strip() != "active"
    )
    status = p.json("status", "web1")
    assert status["current"] == before
    assert p.fetch(8080) == page
    print(
        f"\n{first}\ndeploy gave up after {took:.1f} s; SSH answered again {back_after:.1f} s later"
    )


def test_rollback_that_cuts_off_ssh_is_undone_too(p: DeployProject) -> None:
    before, page = current(p.target), p.fetch(8080)
    stack = p.stacks / "web1.toml"
    saved = stack.read_text()
    stack.write_text(saved + CUTOFF)
    try:
        p.ok("build", "web1")
        cutting = int(p.json("push", "web1")["generation"])  # on the server, not active
    finally:
        stack.write_text(saved)
    result = p.run("rollback", "web1", "--to", str(cutting), "--confirm-timeout", "10")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: web1: rolled back"), first
    wait_reachable(p.target, 60)
    assert current(p.target) == before
    last = history(p.target)[-1]
    assert last["action"] == "rollback" and last["result"] == "rolled back"
    assert f"generation {cutting} was not confirmed within 10 s" in last["message"]
    assert p.fetch(8080) == page


def test_rollback_is_confirmed_over_a_new_connection(p: DeployProject) -> None:
    gen = pushed_generation(p, "one more")
    p.ok("activate", "web1", "--generation", str(gen))
    back = p.json("rollback", "web1")
    assert back["result"] == "ok" and back["confirmed"] is True and back["to"] < gen
    assert history(p.target)[-1]["action"] == "rollback"


def reloads(p: DeployProject) -> int:
    """systemd's "Reloading" lines in this boot's journal: one per daemon-reload."""
    out = p.target.ssh("journalctl -b -o cat _PID=1 --no-pager | grep -c '^Reloading' || true")
    return int(out.stdout.strip() or 0)


def test_a_switch_that_restarts_nothing_has_no_window_no_confirmation_and_no_reload(
    p: DeployProject,
) -> None:
    stack = p.stacks / "web1.toml"
    saved = stack.read_text()
    p.ok("switch", "web1")  # the server runs this stack, whatever the tests before left
    # a check is read only by the switcher: a new generation that restarts nothing
    stack.write_text(saved.replace('{ tcp = "127.0.0.1:8081" }', '{ tcp = "127.0.0.1:8080" }'))
    try:
        before, page, reloaded = current(p.target), p.fetch(8080), reloads(p)
        out = p.ok("switch", "web1").stdout
        assert "  nothing to restart: no health window, no confirmation\n" in out, out
        assert "confirmed over a new connection" not in out
        assert current(p.target) == before + 1
        assert history(p.target)[-1]["result"] == "ok"
        assert p.fetch(8080) == page
        assert reloads(p) == reloaded  # no unit file changed: no daemon-reload
        # a switch that restarts is still gated and confirmed, and reloads when a file changes
        text = stack.read_text()
        stack.write_text(re.sub(r'message = "[^"]*"', 'message = "gated again"', text))
        out = p.ok("switch", "web1").stdout
        assert "confirmed over a new connection" in out and "nothing to restart" not in out
        assert p.fetch(8080) == "gated again from web1\n"
    finally:
        stack.write_text(saved)
