"""A registry that wants a bearer token, as Docker Hub, ghcr.io and quay.io do.

A second docker-registry process reads the session registry's storage (read-only mode), with
distribution's own `auth: token` configured: every request without a valid token gets a 401
and `WWW-Authenticate: Bearer realm=…,service=…,scope=…`. The realm is a tiny token server
(http.server on 127.0.0.1) that hands out anonymous ES256 JWTs signed by a throwaway
self-signed certificate, which the registry trusts through `rootcertbundle`. So the token
flow is checked by the real registry, not by a stand-in.

Repositories in `private` get a token without access, which is what Docker Hub does for a
private or missing repository; the registry then refuses the request again.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from builder.testserver.processes import stop_process
from builder.testserver.registry import _die_with_parent

SERVICE = "bundle-test-registry"
ISSUER = "bundle-test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TokenServer:
    """Issues pull tokens; records every request it gets. A private repository is granted
    only to a request with the Basic credentials of one of `logins` (user -> password)."""

    def __init__(self, private: set[str], logins: dict[str, str] | None = None) -> None:
        self.logins = logins or {}
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bundle test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.private = private
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                server.requests.append({"path": url.path, **query})
                if url.path != "/token" or query.get("service") != SERVICE:
                    self.send_error(400)
                    return
                authed = server.logged_in(self.headers.get("Authorization", ""))
                body = json.dumps({"token": server.token(query.get("scope", ""), authed)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def logged_in(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return bool(user) and self.logins.get(user) == password

    def token(self, scope: str, authed: bool = False) -> str:
        access = []
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name and (authed or name not in self.private):
            access.append(
                {
                    "type": "repository",
                    "name": name,
                    "actions": [a for a in actions.split(",") if a == "pull"],
                }
            )
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": "",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64(signature)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TokenRegistry:
    """docker-registry with token auth over `storage` (read-only), plus its token server."""

    def __init__(
        self, storage: Path, private: set[str] | None = None, logins: dict[str, str] | None = None
    ) -> None:
        self.tokens = TokenServer(private or set(), logins)
        self.workdir = Path(tempfile.mkdtemp(prefix="bundle-token-registry."))
        (self.workdir / "root.pem").write_bytes(self.tokens.cert_pem())
        self.process: subprocess.Popen[bytes] | None = None
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("docker-registry not found (apt-get install docker-registry)")
        for _ in range(5):
            self.port = _free_port()
            config = self.workdir / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {storage}\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                "    readonly:\n      enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n"
                "auth:\n  token:\n"
                f"    realm: {self.tokens.realm}\n"
                f"    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.workdir / 'root.pem'}\n"
            )
            with (self.workdir / "registry.log").open("ab") as log:
                self.process = subprocess.Popen(
                    [exe, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,  # killed with the test process, even by SIGKILL
                )
            if self._wait_ready():
                return
            self._terminate()
        log_text = (self.workdir / "registry.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"token-auth docker-registry did not start:\n{log_text}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2).close()
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for a token
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def stop(self) -> None:
        self._terminate()
        self.tokens.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
