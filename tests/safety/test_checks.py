"""The switcher's health checks, run against real sockets on 127.0.0.1 (no server needed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from activate.health import RUNNERS, Health, gate, run_command, run_http, run_tcp
from activate.manifest import Check, Manifest, parse_manifest
from activate.systemd import UnitState


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/")
            self.end_headers()
            return
        code = 500 if self.path == "/broken" else 200
        body = b"database unreachable\n" if code == 500 else b"welcome home\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, status: int = 200, body: str | None = None) -> Check:
    return Check("http", url, status, body, 2)


def test_http_check_passes_on_status_and_body(web: str) -> None:
    assert run_http(http(f"http://{web}/", body="welcome")) == (True, "answered 200")


def test_http_check_says_what_came_back(web: str) -> None:
    ok, output = run_http(http(f"http://{web}/broken"))
    assert not ok and output == "answered 500, expected 200: database unreachable"
    ok, output = run_http(http(f"http://{web}/", body="dashboard"))
    assert not ok and output == "answered 200 without 'dashboard' in the body: welcome home"
    assert run_http(http(f"http://{web}/broken", status=500))[0]


def test_http_check_does_not_follow_redirects(web: str) -> None:
    ok, output = run_http(http(f"http://{web}/moved"))
    assert not ok and output.startswith("answered 302, expected 200")
    assert run_http(http(f"http://{web}/moved", status=302))[0]


def test_http_check_with_nothing_listening() -> None:
    ok, output = run_http(http(f"http://127.0.0.1:{closed_port()}/"))
    assert not ok and output == "no answer: Connection refused"


def test_tcp_check(web: str) -> None:
    assert run_tcp(Check("tcp", web, timeout=2)) == (True, "connected")
    ok, output = run_tcp(Check("tcp", f"127.0.0.1:{closed_port()}", timeout=2))
    assert not ok and output == "cannot connect: Connection refused"
    assert run_tcp(Check("tcp", f"[::1]:{closed_port()}", timeout=2))[0] is False


def test_command_check_keeps_its_output() -> None:
    assert run_command(Check("command", "echo ready")) == (True, "ready")
    ok, output = run_command(Check("command", "echo 'pg: no connection' >&2; exit 2"))
    assert not ok and output == "exit 2: pg: no connection"
    ok, output = run_command(Check("command", "sleep 5", timeout=1))
    assert not ok and output == "did not finish within 1 s"


# ---- the gate, with a stand-in service manager ------------------------------------------


MANIFEST = """{
 "format": 1, "generation": 2, "parent": 1, "host": "h", "state_dir": "/var/lib/bundle",
 "files": {"units/quadlet/web.container": {"sha256": "%s", "size": 1, "mode": "0644"},
           "units/systemd/backup.service": {"sha256": "%s", "size": 1, "mode": "0644"}},
 "units": {
  "web.container": {"kind": "container", "path": "units/quadlet/web.container",
    "service": "web.service", "closure": "%s", "files": ["units/quadlet/web.container"],
    "requires": [], "image": "x:1", "enable": true,
    "checks": [{"http": "http://%s/", "status": 200, "body": "welcome", "timeout": 2}]},
  "backup.service": {"kind": "service", "path": "units/systemd/backup.service",
    "service": "backup.service", "closure": "%s", "files": ["units/systemd/backup.service"],
    "requires": [], "image": null, "enable": false}
 }
}"""


def manifest_for(web: str) -> Manifest:
    from activate.manifest import closure_hash

    sha = "0" * 64
    closure = closure_hash([("units/quadlet/web.container", sha)])
    closure2 = closure_hash([("units/systemd/backup.service", sha)])
    text = MANIFEST % (sha, sha, closure, web, closure2)
    return parse_manifest(text.encode())


class FakeServices:
    """Answers `states` from a script of (active, sub, NRestarts) per call."""

    managed = True

    def __init__(self, script: list[tuple[str, str, int]]) -> None:
        self.script = script
        self.calls = 0

    def states(self, services: Sequence[str]) -> dict[str, UnitState]:
        active, sub, restarts = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {
            "web.service": UnitState(
                "loaded", active, sub, 42, restarts, "exit-code", 1, 1, 5_000_000, 8_000_000
            ),
            "backup.service": UnitState("loaded", "failed", "failed", None, 0),
        }

    def journal(self, service: str) -> list[dict[str, object]]:
        said = "db password is hunter2-secret"
        return [{"_COMM": "conmon", "CONTAINER_NAME": "systemd-web", "MESSAGE": said}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_gate(web: str, script: list[tuple[str, str, int]], settle: float = 2) -> Health:
    clock = Clock()
    services = FakeServices(script)
    return gate(services, manifest_for(web), 10, settle, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


@pytest.fixture
def http_answers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, str]]:
    """Scripted answers of the HTTP check, so the gate's timing does not hang on the network."""
    answers: list[tuple[bool, str]] = []

    def scripted(check: Check) -> tuple[bool, str]:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setitem(RUNNERS, "http", scripted)
    return answers


def test_gate_runs_the_real_http_check(web: str) -> None:
    health = run_gate(web, [("active", "running", 0)])
    assert health.passed and health.seconds >= 2  # at least the settle window
    assert health.results[1].output == "answered 200"


def test_gate_passes_when_everything_holds_through_the_settle_window(
    web: str, http_answers: list[tuple[bool, str]]
) -> None:
    http_answers.append((True, "answered 200"))
    health = run_gate(web, [("active", "running", 0)])
    assert health.passed and health.seconds == 2
    assert [r.kind for r in health.results] == ["unit", "http"]
    assert health.results[0].output == "1 unit active"  # the timer's service is not judged


def test_gate_waits_for_a_slow_start(web: str, http_answers: list[tuple[bool, str]]) -> None:
    http_answers.append((True, "answered 200"))
    health = run_gate(web, [("activating", "start", 0), ("active", "running", 0)])
    assert health.passed and health.seconds == pytest.approx(2.5)  # one poll, then settle


def test_gate_retries_a_check_that_failed_once(
    web: str, http_answers: list[tuple[bool, str]]
) -> None:
    http_answers.extend([(False, "no answer: timed out"), (True, "answered 200")])
    health = run_gate(web, [("active", "running", 0)])
    assert health.passed and health.seconds == pytest.approx(2.5)  # one poll, then settle
    assert health.results[1].output == "answered 200"


def test_gate_fails_a_restart_loop(web: str) -> None:
    # up at every look, but systemd restarts it between looks
    script = [("active", "running", n) for n in range(100)]
    health = run_gate(web, script)
    assert not health.passed
    (failure,) = health.failures
    assert failure.check == "web.service stays up"
    assert "restarted by systemd while settling" in failure.output
    assert "since the switch" in failure.output and "journalctl -u web.service" in failure.output
    assert health.summary().startswith("1 health check failed after 1")


def test_gate_fails_a_unit_that_is_down_and_names_its_state(web: str) -> None:
    health = run_gate(web, [("activating", "auto-restart", 3)])
    assert not health.passed and health.seconds >= 10
    assert health.failures[0].output.startswith("activating/auto-restart;")


def test_gate_without_managed_services_is_skipped(tmp_path: Path) -> None:
    class Off:
        managed = False

    health = gate(Off(), manifest_for("127.0.0.1:1"), 10, 2)  # type: ignore[arg-type]
    assert health.passed and health.skipped


def test_gate_stops_at_once_when_systemd_gave_up_on_a_unit(web: str) -> None:
    clock = Clock()
    script = [("active", "running", 0), ("activating", "auto-restart", 3), ("failed", "failed", 4)]
    health = gate(
        FakeServices(script),  # type: ignore[arg-type]
        manifest_for(web),
        60,
        2,
        clock=clock,
        sleep=clock.sleep,
        redact=lambda text: text.replace("hunter2-secret", "[secret db]"),
    )
    assert not health.passed and health.seconds < 5  # not the 60 s of the timeout
    assert health.summary() == (
        "web.service keeps crashing: exited 5 times in 3 s (exit status 1), and systemd stopped "
        "restarting it; last log lines: db password is [secret db]; see `journalctl -u web.service`"
    )
    (unit,) = [r.as_json() for r in health.results if r.kind == "unit"]
    assert set(unit) == {"unit", "kind", "check", "ok", "output"}
