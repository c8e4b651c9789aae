"""Notifications: every line the switcher adds to its history is also told to the `[notify]`
targets of the stack (docs/operations.md, Notifications), from the server itself, so that a
rollback nobody watched (the dead-man's) is heard too.

The settings are `notify/notify.json` of the newer of the two generations a line names. A
secret URL or token is a file the switcher completed from a secret (docs/secrets.md); it is
read here and never written anywhere. Sending is bounded: one thread per target, all given
SEND_SECONDS in total; a failure or a timeout is one line in the journal (syslog), never an
error of the switch, and never names the URL.
"""

from __future__ import annotations

import json
import re
import socket
import syslog
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG = "notify/notify.json"
PAUSED = "notify-paused"  # STATE/notify-paused: this server tells nobody (bundle preview's)
SEND_SECONDS = 4.0
EVENTS = ("switched", "rolled back", "rollback failed", "failed units")
# a failed unit as the health gate's lines name it: "web.container: GET http://..."
UNIT_RE = re.compile(r"([A-Za-z0-9_.@-]+\.(?:container|pod|service|timer|volume|network)): ")


def event_of(line: dict[str, Any]) -> str | None:
    """What a history line is, as a notification (None: not one)."""
    action, result = line.get("action"), line.get("result")
    if result == "ok":
        return {"activate": "switched", "rollback": "rolled back"}.get(str(action))
    return {
        "rolled back": "rolled back",
        "rollback failed": "rollback failed",
        "unhealthy": "failed units",
    }.get(str(result))


def told(state: Path, line: dict[str, Any], host: str = "") -> None:
    """Send `line` (a history entry) to the targets of its newer generation; never raises."""
    try:
        if (state / PAUSED).exists():
            return
        settings = _settings(state, line)
        event = event_of(line)
        if settings is None or event is None or event not in settings.get("events", EVENTS):
            return
        body = message(settings.get("host") or host or socket.gethostname(), event, line)
        sends = [_sender(t, body) for t in settings.get("targets", [])]
        _send_all([s for s in sends if s is not None])
    except Exception as exc:  # a notification never fails what it tells of
        _journal(f"notify: not sent: {type(exc).__name__}")


def message(host: str, event: str, line: dict[str, Any]) -> dict[str, Any]:
    text = str(line.get("message") or "")
    return {
        "host": host,
        "event": event,
        "action": line.get("action"),
        "result": line.get("result"),
        "from": line.get("from"),
        "to": line.get("to"),
        "units_failed": sorted(set(UNIT_RE.findall(text))) if event != "switched" else [],
        "message": text,
        "time": line.get("time"),
    }


def _settings(state: Path, line: dict[str, Any]) -> dict[str, Any] | None:
    numbers = [n for n in (line.get("from"), line.get("to")) if isinstance(n, int)]
    if not numbers:
        return None
    folders = sorted((state / "generations").glob(f"{max(numbers)}-*"))
    if len(folders) != 1 or not (folders[0] / CONFIG).is_file():
        return None
    found = json.loads((folders[0] / CONFIG).read_text(encoding="utf-8"))
    return found if isinstance(found, dict) else None


def _secret(target: dict[str, Any], key: str) -> str | None:
    """A value given in clear, or read from the file the switcher completed from a secret."""
    if target.get(key):
        return str(target[key])
    path = target.get(f"{key}_file")
    return Path(path).read_text(encoding="utf-8").strip() if path else None


def _sender(target: dict[str, Any], body: dict[str, Any]) -> Callable[[], None] | None:
    kind, url = target.get("kind"), _secret(target, "url")
    if not url:
        return None
    # start-up: most switches tell nobody, and urllib is ~15 ms of every switcher start
    import urllib.error
    import urllib.request

    failed = body["event"] != "switched"
    if kind == "webhook":
        data = json.dumps(body, sort_keys=True).encode()
        req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    elif kind == "ntfy":
        title = f"{body['host']}: {body['event']}"
        headers = {"Title": title, "Tags": "warning" if failed else "white_check_mark"}
        headers["Priority"] = "high" if failed else "default"
        token = _secret(target, "token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        text = body["message"] or f"generation {body['from']} -> {body['to']}"
        req = urllib.request.Request(url, text.encode(), headers)
    elif kind == "healthchecks":
        ping = url.rstrip("/") + ("/fail" if failed else "")
        req = urllib.request.Request(ping, body["message"].encode()[:10000])
    else:
        return None

    def send() -> None:
        try:
            with urllib.request.urlopen(req, timeout=SEND_SECONDS) as answer:
                answer.read(1024)
        except urllib.error.HTTPError as exc:
            _journal(f"notify: {kind} answered HTTP {exc.code} to {body['event']}")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            _journal(f"notify: {kind} not reached for {body['event']}: {reason}")

    return send


def _send_all(sends: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=s, daemon=True) for s in sends]
    for t in threads:
        t.start()
    deadline = time.monotonic() + SEND_SECONDS
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        _journal(f"notify: gave up waiting after {SEND_SECONDS:.0f} s")


def _journal(text: str) -> None:
    syslog.openlog("bundle-notify")
    syslog.syslog(syslog.LOG_WARNING, text)
