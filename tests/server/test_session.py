"""One remote Python per deploy, on a real server: a switch talks to the switcher over one SSH
channel (plus the dead-man's confirmation over a new connection), repairs a damaged switcher
in that session, keeps the switcher's bytecode outside the hashed folders, and a step that
hangs or a connection that breaks mid-session ends in one line naming the host and the step.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import pytest

from tests.harness import Target
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

STATE = "/var/lib/bundle"
FAULT = "/run/bundle-test-fault"
QUICK = 'address = "web1-test"\ncommand_timeout = 2'
# the deploy's remote Python: `python3 -c LAUNCHER session STATE`, stopped (state T)
STOPPED_SESSION = 'ps -eo pid=,stat=,args= | awk \'$2 ~ /^T/ && $3 == "python3" && $4 == "-c"\''


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    target.ssh(f"rm -rf {STATE}")
    stack = WEB_STACK.replace('address = "web1-test"', QUICK)
    return make_deploy_project(tmp_path_factory.mktemp("session"), target, stack)


@pytest.fixture
def clean(p: DeployProject) -> Any:
    yield p
    p.target.ssh(f"rm -f {FAULT}; {STOPPED_SESSION} | awk '{{print $1}}' | xargs -r kill -9")


def installed(p: DeployProject, report: dict[str, Any]) -> str:
    hashes = p.target.ssh(f"ls {STATE}/switchers").stdout.split()
    assert len(hashes) == 1, hashes
    return f"{STATE}/switchers/{hashes[0]}"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_1_a_first_switch_is_one_channel_and_the_confirmation_one_more(
    clean: DeployProject,
) -> None:
    p = clean
    first = p.json("switch", "web1")
    assert first["push"]["switcher_sent"] and first["push"]["channels"] == 1
    assert first["channels"] == 2, first  # the session; the confirmation, over a new connection
    assert first["to"] == 1 and first["confirmed"] is True, first
    assert p.fetch(8080) == "first from web1\n"

    # the bytecode is cached beside the state, never inside a folder checked by its hash
    cached = p.target.ssh(f"find {STATE}/cache/pycache -name '*.pyc' | wc -l").stdout
    assert int(cached) > 10
    inside = p.target.ssh(f"find {STATE}/switchers {STATE}/generations -name __pycache__").stdout
    assert inside == ""

    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    second = p.json("switch", "web1")
    assert not second["push"]["switcher_sent"] and second["push"]["channels"] == 1
    assert second["push"]["base"] is not None and second["channels"] == 2, second
    assert p.fetch(8080) == "second from web1\n"

    # a push alone, of a generation the server has: one channel, the check
    again = p.json("push", "web1")
    assert again["already_present"] and again["channels"] == 1


def test_2_a_damaged_switcher_is_repaired_in_the_session(clean: DeployProject) -> None:
    p = clean
    folder = installed(p, {})
    p.target.ssh(f": > {folder}/activate/receive.py")
    p.edit("web1.toml", 'message = "second"', 'message = "third"')
    report = p.json("switch", "web1")
    push = report["push"]
    assert push["switcher_repaired"].startswith(f"the switcher in {folder} was damaged")
    assert "activate/receive.py is empty" in push["switcher_repaired"]
    assert push["switcher_sent"] and push["channels"] == 1 and report["channels"] == 2
    assert p.fetch(8080) == "third from web1\n"
    size = p.target.ssh(f"stat -c %s {folder}/activate/receive.py").stdout
    assert int(size) > 1000


def test_3_a_step_that_hangs_mid_session_ends_by_its_deadline(clean: DeployProject) -> None:
    p = clean
    p.edit("web1.toml", 'message = "third"', 'message = "fourth"')
    p.ok("build", "web1")
    p.target.write_file(FAULT, "call-have:stop\n")
    t0 = time.monotonic()
    result = p.run("push", "web1", timeout=120)
    seconds = time.monotonic() - t0
    line = one_line(result)
    assert line.startswith(
        "error: web1: no answer from the server for 2 s while asking which files it already "
        "has (have); check that the host is up"
    ), line
    assert seconds < 60
    assert "receive" not in line
    p.target.ssh(f"rm -f {FAULT}")
    # nothing half-done: the next push sends it, the server still runs what it ran
    assert p.json("push", "web1")["generation"] == 4
    assert p.fetch(8080) == "third from web1\n"


def _cut_connection_when_stopped(target: Target) -> None:
    """Wait until the session stopped itself, then kill the sshd processes above it: the
    deployer's connection breaks in the middle of the session."""
    script = (
        f"for i in $(seq 300); do pid=$({STOPPED_SESSION} | awk '{{print $1}}' | head -1); "
        '[ -n "$pid" ] && break; sleep 0.2; done; '
        'while [ -n "$pid" ] && [ "$pid" != 1 ]; do '
        'pid=$(ps -o ppid= -p "$pid" | tr -d " "); '
        'case "$(ps -o comm= -p "$pid")" in sshd*) kill -9 "$pid";; esac; done'
    )
    target.ssh(script, timeout=120)


def test_4_a_connection_lost_mid_session_is_one_line(clean: DeployProject) -> None:
    p = clean
    p.edit("web1.toml", 'message = "fourth"', 'message = "fifth"')
    p.ok("build", "web1")
    p.target.write_file(FAULT, "call-receive:stop\n")
    cutter = threading.Thread(target=_cut_connection_when_stopped, args=(p.target,))
    cutter.start()
    result = p.run("push", "web1", timeout=120)
    cutter.join(timeout=150)
    line = one_line(result)
    assert line.startswith("error: web1: lost the connection to "), line
    assert "while receiving the pushed generation (receive)" in line, line
    assert "Traceback" not in result.stderr
    p.target.ssh(f"rm -f {FAULT}; {STOPPED_SESSION} | awk '{{print $1}}' | xargs -r kill -9")
    report = p.json("switch", "web1")
    assert report["to"] == 5 and report["push"]["channels"] == 1
    assert p.fetch(8080) == "fifth from web1\n"
