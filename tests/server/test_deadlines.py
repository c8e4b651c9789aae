"""A server that stops answering: every remote step ends by its deadline or by keepalive, with
one line naming the host and the step, the other hosts of a fleet carry on, and the server
still ends on one whole generation."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness import Target
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project
from tests.server.conftest import add_host as reach_host

# Short deadlines: a look-up gets 2 s, an activation 2 * 11 + 5 + 0 + 5 = 32 s.
QUICK = 'address = "web1-test"\ncommand_timeout = 2\nhealth_timeout = 5\nhealth_settle = 0\nconfirm_timeout = 5'
STACK = WEB_STACK.replace('address = "web1-test"', QUICK)
HUNG_PIDS = "/run/bundle-test-hung"
FAULT = "/run/bundle-test-fault"


def hang_python(target: Target, *words: str) -> None:
    """The server's python3 stops itself (SIGSTOP) when its command line holds every word:
    a server-side command that was accepted and never answers."""
    site = target.ssh("python3 -c 'import site; print(site.getsitepackages()[0])'").stdout.strip()
    wanted = repr([w.encode() for w in words])
    line = (
        'import os, signal; c = open("/proc/self/cmdline", "rb").read().split(b"\\0"); '
        f"set({wanted}) <= set(c) and c.count(b'activate') >= {words.count('activate')} "
        f'and open("{HUNG_PIDS}", "a").write("%d\\n" % os.getpid()) '
        "and os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    target.write_file(f"{site}/zz_bundle_test_hang.pth", line)


def unhang_python(target: Target) -> None:
    target.ssh(
        "rm -f $(python3 -S -c 'import site; print(site.getsitepackages()[0])')"
        f"/zz_bundle_test_hang.pth; for pid in $(cat {HUNG_PIDS} 2>/dev/null); do "
        f"kill -9 $pid 2>/dev/null; done; rm -f {HUNG_PIDS}"
    )


@contextlib.contextmanager
def hung(target: Target, *words: str) -> Iterator[None]:
    hang_python(target, *words)
    try:
        yield
    finally:
        unhang_python(target)


@contextlib.contextmanager
def stopped_at_call(target: Target, command: str) -> Iterator[None]:
    """The deploy's one remote Python stops itself (SIGSTOP) when it is asked to run the
    switcher's `command` (activate/inprocess.py): a step that was accepted and never answers."""
    target.write_file(FAULT, f"call-{command}:stop\n")
    try:
        yield
    finally:
        target.ssh(
            f"rm -f {FAULT}; ps -eo pid=,stat=,args= | "
            'awk \'$2 ~ /^T/ && $3 == "python3" && $4 == "-c" {print $1}\' | xargs -r kill -9'
        )


@contextlib.contextmanager
def silent_network(target: Target) -> Iterator[None]:
    """Every packet to and from the server's sshd dropped inside its network namespace (the
    server's own nft, run from here in its netns: nothing can reach it to undo the rule)."""
    nft = ["ip", "netns", "exec", target.name, "chroot", str(target.state_dir / "root"), "nft"]
    rules = (
        "table inet bundle_test_silence {\n"
        "  chain in { type filter hook input priority -10; tcp dport 22 drop; }\n"
        "  chain out { type filter hook output priority -10; tcp sport 22 drop; }\n"
        "}\n"
    )
    subprocess.run([*nft, "-f", "-"], input=rules, text=True, check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(
            [*nft, "delete", "table", "inet", "bundle_test_silence"], check=True, timeout=30
        )


def add_host(p: DeployProject, name: str, target: Target) -> None:
    """A second host in the same project, on its own server."""
    stack = (p.stacks / "web1.toml").read_text()
    stack = stack.replace('name = "web1"', f'name = "{name}"')
    stack = stack.replace('address = "web1-test"', f'address = "{name}-test"')
    # the healthy host: a deadline no loaded machine reaches, so only the hung host fails
    stack = stack.replace("command_timeout = 2", "command_timeout = 60")
    (p.stacks / f"{name}.toml").write_text(stack)
    reach_host(p, name, target)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def timed(fn: Callable[[], subprocess.CompletedProcess[str]]) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def current(target: Target) -> str:
    return target.ssh("readlink /var/lib/bundle/current").stdout.strip()


def stopped_activation(target: Target) -> int:
    """The pid of the detached activation that stopped itself at the fault point."""
    for _ in range(100):
        out = target.ssh(
            "cat $(ls -d /var/lib/bundle/runs/*/ | sort -t- -k2 -n | tail -1)status.json",
            check=False,
        ).stdout
        status = json.loads(out) if out.strip() else {}
        if status.get("phase") == "switching":
            return int(status["pid"])
        time.sleep(0.2)
    raise AssertionError(f"no activation reached the fault point: {out}")


def settles_on(p: DeployProject, folder_prefix: str, guard: float = 90) -> dict[str, Any]:
    """Poll `bundle status` until the server runs the generation and no switch runs."""
    deadline = time.monotonic() + guard
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = p.run("status", "web1", "--json")
        if r.returncode == 0:
            report = json.loads(r.stdout)
            if not report.get("switching") and current(p.target).startswith(folder_prefix):
                return report
        time.sleep(1)
    raise AssertionError(f"the server did not settle on {folder_prefix}: {report}")


@pytest.fixture(scope="module")
def project(
    target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> DeployProject:
    p = make_deploy_project(tmp_path_factory.mktemp("deadlines"), target, STACK)
    p.ok("switch", "web1")
    assert current(target).startswith("generations/1-")
    return p


@pytest.fixture
def clean_server(project: DeployProject) -> Iterator[DeployProject]:
    """The module's server back to answering and on generation 1 after each test."""
    yield project
    unhang_python(project.target)
    project.target.ssh(f"rm -f {FAULT}")


def test_a_status_that_never_answers_ends_by_its_deadline(clean_server: DeployProject) -> None:
    p = clean_server
    with hung(p.target, "-m", "status"):
        result, seconds = timed(lambda: p.run("status", "web1", timeout=120))
    line = one_line(result)
    assert line == (
        "error: web1: no answer from the server for 2 s while reading its status (status); "
        "check that the host is up (ssh root@web1-test true) or raise [host] command_timeout"
    )
    assert seconds < 60
    assert p.run("status", "web1").returncode == 0  # nothing was left behind


def test_a_fleet_reports_the_healthy_host_while_one_hangs(
    clean_server: DeployProject, target_factory: Callable[[], Target]
) -> None:
    p = clean_server
    healthy = target_factory()
    add_host(p, "web2", healthy)
    # long enough for the healthy host to answer first on a loaded machine
    p.edit("web1.toml", "command_timeout = 2", "command_timeout = 15")
    with hung(p.target, "-m", "status"):
        result, seconds = timed(lambda: p.run("status", "web1", "web2", timeout=120))
    p.edit("web1.toml", "command_timeout = 15", "command_timeout = 2")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    web2 = next(i for i, ln in enumerate(lines) if ln.startswith("web2: "))
    web1 = next(i for i, ln in enumerate(lines) if ln.startswith("web1: FAILED: "))
    assert web2 < web1, result.stdout  # the healthy host reported first, as soon as it was done
    assert "no generation is active" in lines[web2]
    assert "no answer from the server for 15 s while reading its status (status)" in lines[web1]
    table = {ln.split()[0]: ln.split() for ln in lines[web1 + 1 :] if ln.strip()}
    assert table["web1"][3] == "failed" and table["web2"][3] == "ok"
    assert result.stderr.strip() == "error: 1 of 2 hosts failed: web1"
    assert seconds < 60

    # a switch: the hung host fails by its activation deadline, the other one switches
    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    with stopped_at_call(p.target, "activate"):
        result, seconds = timed(lambda: p.run("switch", "web1", "web2", timeout=240))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    web2 = next(i for i, ln in enumerate(lines) if ln.startswith("web2: switch"))
    web1 = next(i for i, ln in enumerate(lines) if ln.startswith("web1: FAILED: "))
    assert web2 < web1 and lines[web2].endswith(": ok"), result.stdout
    assert (
        "web1: no answer from the server for 32 s while activating the new generation "
        "(activate); the switch goes on there without this deploy" in lines[web1]
    )
    assert "bundle status web1" in lines[web1]
    assert seconds < 200
    assert current(healthy).startswith("generations/1-")
    assert current(p.target).startswith("generations/1-")  # the starter never started it
    p.edit("web1.toml", 'message = "second"', 'message = "first"')
    (p.stacks / "web2.toml").unlink()


def test_a_switch_that_hangs_mid_way_still_ends_on_one_generation(
    clean_server: DeployProject,
) -> None:
    p = clean_server
    p.edit("web1.toml", 'message = "first"', 'message = "third"')
    p.target.write_file(FAULT, "switch-running:stop\n")
    result, seconds = timed(lambda: p.run("switch", "web1", timeout=240))
    line = one_line(result)
    assert line.startswith(
        "error: web1: no answer from the server for 32 s while activating the new generation "
        "(activate); the switch goes on there without this deploy and ends on the old or the "
        "new generation"
    ), line
    assert seconds < 200
    # the hang ends: the switch goes on, is never confirmed, and goes back by itself
    pid = stopped_activation(p.target)
    p.target.ssh(f"rm -f {FAULT}; kill -CONT {pid}")
    report = settles_on(p, "generations/1-")
    assert report["current"] == 1
    assert report["last"]["result"] == "rolled back", report["last"]
    assert p.fetch(8080) == "first from web1\n"
    p.edit("web1.toml", 'message = "third"', 'message = "first"')


def test_b_a_network_that_falls_silent_mid_switch_is_noticed_by_keepalive(
    clean_server: DeployProject,
) -> None:
    p = clean_server
    # a long activation deadline (30 s look-ups): keepalive, not the deadline, must notice
    p.edit("web1.toml", "command_timeout = 2", "command_timeout = 30")
    p.edit("web1.toml", 'message = "first"', 'message = "fourth"')
    p.target.write_file(FAULT, "switch-running:stop\n")
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(p.home)}
    deployer = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "switch", "web1"],
        cwd=p.root,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        pid = stopped_activation(p.target)
        with silent_network(p.target):
            t0 = time.monotonic()
            out, err = deployer.communicate(timeout=180)
            seconds = time.monotonic() - t0
    finally:
        if deployer.poll() is None:
            deployer.kill()
            deployer.wait()
    result = subprocess.CompletedProcess(deployer.args, deployer.returncode, out, err)
    line = one_line(result)
    assert (
        line.startswith("error: web1: lost the connection to root@")
        and "while activating the new generation (activate): the connection closed, or the server "
        "stopped answering keepalives"
        in line
    )
    assert "bundle status web1" in line
    assert seconds < 120  # noticed by keepalive, far before the 340 s activation deadline
    p.target.ssh(f"rm -f {FAULT}; kill -CONT {pid}")
    report = settles_on(p, "generations/1-")
    assert report["last"]["result"] == "rolled back", report["last"]
    assert p.fetch(8080) == "first from web1\n"
    p.edit("web1.toml", 'message = "fourth"', 'message = "first"')
    p.edit("web1.toml", "command_timeout = 30", "command_timeout = 2")
