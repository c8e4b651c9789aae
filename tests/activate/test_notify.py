"""activate/notify.py against a receiver on loopback: which history lines are told, to whom,
with what; a paused server tells nobody; a target that never answers costs at most 4 s and
never raises."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activate import notify


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def state_with(tmp_path: Path, generation: int, targets: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "state/generations" / f"{generation}-0123456789ab/notify"
    folder.mkdir(parents=True)
    config = {"format": 1, "host": "web1", "events": list(notify.EVENTS), "targets": targets}
    (folder / "notify.json").write_text(json.dumps(config))
    return tmp_path / "state"


LINE = {"time": "2026-12-07T05:00:00Z", "action": "activate", "from": 6, "to": 7}


def test_lines_become_events_for_each_target(
    tmp_path: Path, received: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = received
    token = tmp_path / "token"
    token.write_text("tk_from_a_secret\n")
    state = state_with(
        tmp_path,
        7,
        [
            {"kind": "webhook", "url": f"{url}/hook"},
            {"kind": "ntfy", "url": f"{url}/topic", "token_file": str(token)},
        ],
    )
    failed = "rolled back to generation 6: activating generation 7 failed: 1 health check "
    failed += "failed after 8 s: site.container: GET http://127.0.0.1:8080/ answers 500"
    notify.told(state, {**LINE, "result": "rolled back", "message": failed})
    by = {r["path"]: r for r in seen}
    body = json.loads(by["/hook"]["body"])
    assert (body["event"], body["from"], body["to"]) == ("rolled back", 6, 7)
    assert body["units_failed"] == ["site.container"] and body["host"] == "web1"
    assert by["/topic"]["headers"]["Authorization"] == "Bearer tk_from_a_secret"
    assert by["/topic"]["headers"]["Title"] == "web1: rolled back"

    seen.clear()  # a gc or a data restore is not an event; a paused server tells nobody
    notify.told(state, {**LINE, "action": "gc", "result": "ok", "message": ""})
    (state / notify.PAUSED).touch()
    notify.told(state, {**LINE, "result": "ok", "message": "restarted web"})
    assert seen == []


def test_a_target_that_never_answers_costs_at_most_the_budget(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    try:
        port = silent.getsockname()[1]
        state = state_with(tmp_path, 7, [{"kind": "webhook", "url": f"http://127.0.0.1:{port}/"}])
        t0 = time.monotonic()
        notify.told(state, {**LINE, "result": "ok", "message": "restarted web"})
        assert time.monotonic() - t0 < notify.SEND_SECONDS + 2
    finally:
        silent.close()


def test_events_of_history_lines() -> None:
    cases = {
        ("activate", "ok"): "switched",
        ("rollback", "ok"): "rolled back",
        ("activate", "rolled back"): "rolled back",
        ("activate", "rollback failed"): "rollback failed",
        ("activate", "unhealthy"): "failed units",
        ("restore-data", "ok"): None,
        ("gc", "ok"): None,
    }
    for (action, result), event in cases.items():
        assert notify.event_of({"action": action, "result": result}) == event
