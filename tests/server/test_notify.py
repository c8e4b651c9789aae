"""[notify] on a real server: a webhook, ntfy and a healthchecks ping, sent by the server itself
to a receiver on the host side of its link, for a switch, a failed gate, a rollback command,
the dead-man's rollback nobody watched, and units left failed; secret URLs never in a bundle."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from builder.testserver.webstack import web_stack
from tests.harness import Target
from tests.server.conftest import DeployProject, make_deploy_project

PASSPHRASE = "notify test passphrase"
TOKEN = "tk_secret_token_of_the_test"
HC_UUID = "5f0c-uuid-of-the-test"
CHECK = 'checks = [{ http = "http://127.0.0.1:8080/", body = "from web1" }]\n'


@dataclass
class Receiver:
    """Every request that reaches it: method, path, headers, body."""

    address: str
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    _server: Any = None

    def start(self) -> Receiver:
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                seen.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                    | {"body": body}
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((self.address, 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"

    def wait(self, count: int, seconds: float = 60) -> list[dict[str, Any]]:
        """The first `count` requests since the last clear (a generous guard against a hang)."""
        deadline = time.monotonic() + seconds
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(self.seen) >= count, self.seen
        got = sorted(self.seen[:count], key=lambda r: r["path"])
        self.seen.clear()
        return got


@pytest.fixture(scope="module")
def receiver(target: Target) -> Iterator[Receiver]:
    r = Receiver(target.gateway).start()
    try:
        yield r
    finally:
        r._server.shutdown()
        r._server.server_close()


def stack(receiver: Receiver, message: str = "first", check: str = CHECK) -> str:
    host = "health_timeout = 8\nhealth_settle = 1\nconfirm_timeout = 15\n"
    text = web_stack(message=message, host=host, volume=False, other_lines="")
    text = text.replace('mount = "/www/index.html" }]\n', 'mount = "/www/index.html" }]\n' + check)
    return text + (
        f'\n[notify]\nwebhook = "{receiver.url("/hook")}"\nntfy_secret = "ntfy_url"\n'
        'ntfy_token_secret = "ntfy_token"\nhealthchecks_secret = "hc_url"\n'
    )


@pytest.fixture(scope="module")
def p(
    target: Target, registry: Any, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> DeployProject:
    project = make_deploy_project(tmp_path_factory.mktemp("notify"), target, stack(receiver))
    project.env.update(BUNDLE_PASSPHRASE=PASSPHRASE, BUNDLE_SECRETS_KDF_LOG2N="10")
    for name, value in (
        ("ntfy_url", receiver.url("/alerts-topic")),
        ("ntfy_token", TOKEN),
        ("hc_url", receiver.url(f"/ping/{HC_UUID}")),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "builder.cli", "secrets", "set", "web1", name],
            cwd=project.root,
            input=value,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(project.home), **project.env},
            start_new_session=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    return project


def write(p: DeployProject, receiver: Receiver, message: str, check: str = CHECK) -> None:
    (p.stacks / "web1.toml").write_text(stack(receiver, message, check))


def told(requests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The webhook's JSON body, the ntfy request and the healthchecks ping, in that order."""
    by = {r["path"].split("/")[1]: r for r in requests}
    assert sorted(by) == ["alerts-topic", "hook", "ping"], requests
    return json.loads(by["hook"]["body"]), by["alerts-topic"], by["ping"]


def test_every_event_is_told_by_the_server(p: DeployProject, receiver: Receiver) -> None:
    # a switch
    p.ok("switch", "web1")
    hook, ntfy, ping = told(receiver.wait(3))
    assert {k: hook[k] for k in ("host", "event", "from", "to", "units_failed")} == {
        "host": "web1",
        "event": "switched",
        "from": None,
        "to": 1,
        "units_failed": [],
    }
    assert hook["time"] and hook["result"] == "ok"
    assert ntfy["method"] == "POST" and ntfy["headers"]["Title"] == "web1: switched"
    assert ntfy["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert ntfy["headers"]["Priority"] == "default" and ntfy["body"]
    assert ping["path"] == f"/ping/{HC_UUID}"
    # the secret URLs and the token never travel in the bundle or stay in the server's history
    built = b"".join(f.read_bytes() for f in p.bundles.rglob("*") if f.is_file())
    for value in (TOKEN.encode(), HC_UUID.encode(), b"alerts-topic"):
        assert value not in built
    assert TOKEN not in p.target.ssh("cat /var/lib/bundle/history.jsonl").stdout

    # the health gate fails: the server goes back and says which unit failed
    write(p, receiver, "second", 'checks = [{ http = "http://127.0.0.1:8080/", body = "nope" }]\n')
    assert p.run("switch", "web1").returncode == 1
    hook, ntfy, ping = told(receiver.wait(3))
    assert (hook["event"], hook["from"], hook["to"]) == ("rolled back", 1, 2)
    assert hook["units_failed"] == ["web.container"], hook
    assert ntfy["headers"]["Title"] == "web1: rolled back" and ntfy["headers"]["Priority"] == "high"
    assert ping["path"] == f"/ping/{HC_UUID}/fail"

    # a good switch, then the deployer's own rollback
    write(p, receiver, "third")
    p.ok("switch", "web1")
    assert told(receiver.wait(3))[0]["event"] == "switched"
    p.ok("rollback", "web1")
    hook, _, ping = told(receiver.wait(3))
    assert (hook["event"], hook["action"], hook["from"], hook["to"]) == (
        "rolled back",
        "rollback",
        3,
        1,
    )
    assert ping["path"] == f"/ping/{HC_UUID}/fail"

    # the dead-man: activated, never confirmed (the deployer went away), back by itself
    write(p, receiver, "fourth")
    p.ok("build", "web1")
    gen = int(p.json("push", "web1")["generation"])
    folder = p.target.ssh(f"ls -d /var/lib/bundle/generations/{gen}-*").stdout.strip()
    p.target.ssh(
        f"cd {folder} && python3 -B -m activate activate --generation {gen} --detach "
        "--confirm-timeout 4 --state /var/lib/bundle"
    )
    hook, _, _ = told(receiver.wait(3))
    assert (hook["event"], hook["from"], hook["to"]) == ("rolled back", 1, gen)
    assert f"generation {gen} was not confirmed within 4 s" in hook["message"]

    # --no-rollback: the failed units stay, and are told
    write(p, receiver, "fifth", 'checks = [{ http = "http://127.0.0.1:8080/", body = "nope" }]\n')
    assert p.run("switch", "web1", "--no-rollback").returncode == 1
    hook, ntfy, ping = told(receiver.wait(3))
    assert (hook["event"], hook["result"], hook["units_failed"]) == (
        "failed units",
        "unhealthy",
        ["web.container"],
    )
    assert ping["path"] == f"/ping/{HC_UUID}/fail"
    assert receiver.seen == []


def test_a_target_that_does_not_answer_never_fails_the_switch(
    p: DeployProject, receiver: Receiver
) -> None:
    closed = receiver.url("/hook").replace(f":{receiver.port}/", ":9/")  # nothing listens
    write(p, receiver, "sixth")
    text = (p.stacks / "web1.toml").read_text().replace(receiver.url("/hook"), closed)
    (p.stacks / "web1.toml").write_text(text)
    p.ok("switch", "web1")
    # the other two are told; the webhook's failure is one journal line without its URL
    got = receiver.wait(2)
    assert sorted(r["path"].split("/")[1] for r in got) == ["alerts-topic", "ping"]
    journal = p.target.ssh("journalctl -t bundle-notify --no-pager -o cat").stdout
    assert "notify: webhook not reached for switched" in journal, journal
    assert TOKEN not in journal and HC_UUID not in journal and ":9/" not in journal
