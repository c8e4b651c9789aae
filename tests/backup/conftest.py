"""Backups on a real server: restic installed from this machine, an S3 server (moto) and a
healthchecks-style receiver listening on the host side of the server's link, and a project with
a stateful busybox container whose volume its httpd serves.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Target
from tests.secrets.conftest import SecretsProject, make_secrets_project
from tests.server.conftest import make_deploy_project

PASSWORD = "restic-pw-5e1f0a-ONLY-IN-SECRETS"
S3_KEY = "AKIA-TEST-ONLY-IN-SECRETS"
S3_SECRET = "s3-secret-9b7c2d-ONLY-IN-SECRETS"
BUCKET = "backups"

STACK = """\
[host]
name = "web1"
address = "web1-test"

[backup]
tool = "restic"
repository = "/srv/backup-repo"
password_secret = "backup_password"
healthcheck_url = "{ping}"
on_calendar = "*-*-* 03:00:00"

[volumes.site-data]

[containers.site]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8080:8080"]
volumes = ["site-data:/www"]
stateful = true

[containers.other]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8081:8080"]
"""


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@dataclass
class Pings:
    """A healthchecks.io stand-in: remembers every request's path and body."""

    address: str
    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/ping/web1"

    def start(self) -> Pings:
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                seen.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((self.address, 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]

    def clear(self) -> None:
        self.seen.clear()


@dataclass
class S3Server:
    """moto's S3 in server mode, on the host side of the target's link only."""

    address: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> S3Server:
        self.port = free_port(self.address)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.address, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("moto_server exited at start") from None
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not answer on {self.endpoint}")

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200

    def keys(self, bucket: str) -> str:
        with urllib.request.urlopen(f"{self.endpoint}/{bucket}?list-type=2", timeout=10) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def pings(target: Target) -> Iterator[Pings]:
    p = Pings(target.gateway).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def s3(target: Target) -> Iterator[S3Server]:
    server = S3Server(target.gateway).start()
    try:
        yield server
    finally:
        server.stop()


def install_restic(target: Target) -> None:
    """Debian's restic on the server (no internet there): one binary that needs only libc."""
    binary = shutil.which("restic")
    assert binary, "restic is missing on this machine: apt-get install restic (.ci/run does)"
    target.write_file("/usr/bin/restic", Path(binary).read_bytes(), 0o755)


@pytest.fixture(scope="module")
def server_project(
    tmp_path_factory: pytest.TempPathFactory, target: Target, registry: Any, pings: Pings
) -> SecretsProject:
    """One project per server (generation numbers must not collide), restic installed."""
    install_restic(target)
    stack = STACK.format(ping=pings.url)
    deploy = make_deploy_project(tmp_path_factory.mktemp("backup"), target, stack)
    p = make_secrets_project(deploy.root, stack)
    p.env["HOME"] = str(deploy.home)
    return p


def fetch(target: Target, port: int, path: str = "/", tries: int = 80) -> str:
    last: Exception | None = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(target.url(port, path), timeout=2) as r:
                return str(r.read().decode())
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"{target.url(port, path)} did not answer: {last}")


def main_pid(target: Target, service: str) -> int:
    return int(target.ssh(f"systemctl show -p MainPID --value {service}").stdout.strip())
