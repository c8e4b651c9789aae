"""Rolling and canary switches on three real servers: a batch whose host fails its health gate
stops the rollout and goes back as a whole, later hosts are never reached; a canary is watched
while it runs and the rest follow only when it stayed healthy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from builder.testserver.webstack import web_stack
from tests.harness import Target
from tests.server.conftest import DeployProject, add_host, make_deploy_project

CANARY_5M = ("--canary", "web1", "--canary-wait", "5m")
FAILING = '\nchecks = [{ http = "http://127.0.0.1:8080/", body = "never on this page" }]\n'


def stack(name: str, *, message: str = "first", failing: bool = False) -> str:
    # a short gate, so the failing host fails soon; no data volume: nothing to snapshot
    host = "health_timeout = 8\nhealth_settle = 1\nconfirm_timeout = 20\n"
    text = web_stack(name, f"{name}-test", message=message, host=host, volume=False)
    return text + (FAILING if failing else "")


def write(p: DeployProject, name: str, **kw: object) -> None:
    (p.stacks / f"{name}.toml").write_text(stack(name, **kw))  # type: ignore[arg-type]


def current(target: Target) -> int | None:
    link = target.ssh("readlink /var/lib/bundle/current || true").stdout.strip()
    return int(link.split("/")[-1].split("-")[0]) if link else None


def pushed(target: Target) -> list[int]:
    names = target.ssh("ls /var/lib/bundle/generations").stdout.split()
    return sorted(int(n.split("-")[0]) for n in names)


def table(stdout: str) -> dict[str, list[str]]:
    """The summary's rows by host: BATCH FROM TO RUNS RESULT."""
    rows = stdout.split("\n\n")[-1].splitlines()
    assert rows[0].split() == ["HOST", "BATCH", "FROM", "TO", "RUNS", "RESULT"], stdout
    cells = [r.split() for r in rows[1:] if not r.startswith("all ")]  # not the closing line
    return {c[0]: [*c[1:5], " ".join(c[5:])] for c in cells}


def page(p: DeployProject, target: Target) -> str:
    return DeployProject(p.root, p.home, target).fetch(8080)


def test_a_rolling_switch_stops_at_the_failed_batch_and_a_canary_leads(
    tmp_path: Path, target: Target, registry: object, target_factory: Callable[[], Target]
) -> None:
    servers = {"web1": target, "web2": target_factory(), "web3": target_factory()}
    p = make_deploy_project(tmp_path, target, stack("web1"))
    for name, server in servers.items():
        write(p, name)
        if name != "web1":
            add_host(p, name, server)
    p.ok("switch", "web1", "web2", "web3")
    assert [current(s) for s in servers.values()] == [1, 1, 1]

    # one host at a time; web2's new generation fails its health gate
    for name in servers:
        write(p, name, message="second", failing=name == "web2")
    r = p.run("switch", "web1", "web2", "web3", "--batch", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    assert out.index("batch 1 of 3: web1") < out.index("batch 2 of 3: web2")
    assert "batch 3 of 3" not in out
    assert "web2: FAILED: web2: rolled back to generation 1: " in out
    assert table(out) == {
        "web1": ["1", "1", "2", "2", "switched"],
        "web2": ["2", "1", "2", "1", "rolled back"],
        "web3": ["3", "-", "-", "-", "not reached"],
    }
    assert r.stderr.strip() == (
        "error: stopped at batch 2 of 3: web2 failed; 1 host not reached"
    ), r.stderr
    assert [current(s) for s in servers.values()] == [2, 1, 1]
    assert page(p, servers["web1"]) == "second from web1\n"
    assert page(p, servers["web2"]) == "first from web2\n"
    assert pushed(servers["web3"]) == [1]  # never contacted: not even pushed to
    assert page(p, servers["web3"]) == "first from web3\n"

    # two at a time: web1 switched beside the failing web2, and goes back with its batch
    write(p, "web1", message="third")
    r = p.run("switch", "web1", "web2", "web3", "--batch", "2", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["complete"] is False
    first, second = report["batches"]
    runs = {h["host"]: h for h in first["hosts"] + second["hosts"]}
    assert (runs["web1"]["result"], runs["web1"]["from"], runs["web1"]["to"]) == (
        "rolled back with its batch",
        2,
        3,
    )
    assert runs["web1"]["runs"] == 2 and runs["web2"]["runs"] == 1
    assert runs["web2"]["result"] == "rolled back" and "health check" in runs["web2"]["error"]
    assert runs["web3"] == {
        "batch": 2,
        "error": None,
        "from": None,
        "host": "web3",
        "reached": False,
        "result": "not reached",
        "runs": None,
        "to": None,
    }
    assert [current(s) for s in servers.values()] == [2, 1, 1]
    assert page(p, servers["web1"]) == "second from web1\n"

    # web2 fixed; web3 goes first and runs healthy for a while before the others follow
    write(p, "web2", message="third")
    write(p, "web3", message="third")
    t0 = time.monotonic()
    r = p.run("switch", "web1", "web2", "web3", "--canary", "web3", "--canary-wait", "6s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - t0 > 6
    out = r.stdout
    assert out.index("batch 1 of 2: web3") < out.index("web3: watching for 6 s")
    assert out.index("web3: watching for 6 s") < out.index("batch 2 of 2: web1, web2")
    rows = table(out)
    assert {h: rows[h][4] for h in rows} == dict.fromkeys(("web1", "web2", "web3"), "switched")
    assert [rows[h][0] for h in ("web3", "web1", "web2")] == ["1", "2", "2"]
    assert out.rstrip().endswith("all 3 hosts switched in 2 batches")
    for name, server in servers.items():
        assert page(p, server) == f"third from {name}\n"

    # the canary breaks while it is watched: it goes back, nobody else is reached
    for name in servers:
        write(p, name, message="fourth")
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(p.home)}
    deployer = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "switch", *servers, *CANARY_5M],
        cwd=p.root,
        env=env,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert deployer.stdout is not None
        seen = []
        for line in deployer.stdout:
            seen.append(line)
            if line.startswith("web1: watching for 300 s before the other 2 hosts"):
                break
        assert any(ln.startswith("web1: switch 3 -> 4: ok") for ln in seen), seen
        servers["web1"].ssh("systemctl stop web.service")
        rest, err = deployer.communicate(timeout=240)  # guards a hang; the watch looks every 5 s
    finally:
        if deployer.poll() is None:
            deployer.kill()
            deployer.wait()
    assert deployer.returncode == 1, "".join(seen) + rest + err
    assert err.strip().startswith(
        "error: stopped after batch 1 of 2: web1 stopped being healthy: web.service is active: "
    ), err
    assert err.strip().endswith("; 2 hosts not reached"), err
    rows = table(rest)
    assert rows["web1"][1:] == ["3", "4", "3", "rolled back with its batch"]
    assert rows["web2"][4] == rows["web3"][4] == "not reached"
    assert [current(s) for s in servers.values()] == [3, 3, 3]
    assert page(p, servers["web1"]) == "third from web1\n"
    assert page(p, servers["web2"]) == "third from web2\n"
