"""A project whose host is a real test server, with the safety keys set for quick tests."""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness import Target
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

STATE = "/var/lib/bundle"

# checks on the server's own view of the ports; short timeouts keep failing tests quick
SAFE_STACK = WEB_STACK.replace(
    'address = "web1-test"\n',
    'address = "web1-test"\nhealth_timeout = 8\nhealth_settle = 1\nconfirm_timeout = 15\n',
).replace(
    'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }]\n',
    'configs = [{ template = "web/index.html.j2", mount = "/www/index.html" }]\n'
    "checks = [\n"
    '  { http = "http://127.0.0.1:8080/", body = "from web1" },\n'
    '  { tcp = "127.0.0.1:8081" },\n'
    '  { command = "podman volume exists web-data" },\n'
    "]\n",
)


def safe_project(tmp_path: Path, target: Target, stack: str = SAFE_STACK) -> DeployProject:
    assert stack != WEB_STACK
    return make_deploy_project(tmp_path, target, stack)


def current(target: Target) -> int:
    link = target.ssh(f"readlink {STATE}/current").stdout.strip()
    return int(link.removeprefix("generations/").split("-")[0])


def history(target: Target) -> list[dict]:
    import json

    text = target.ssh(f"cat {STATE}/history.jsonl").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_reachable(target: Target, seconds: float) -> float:
    """Seconds until a new SSH login works again (AssertionError after `seconds`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if target.ssh("true", check=False, timeout=15).returncode == 0:
            return time.monotonic() - t0
        time.sleep(1)
    raise AssertionError(f"{target.host} still refuses new SSH connections after {seconds} s")
