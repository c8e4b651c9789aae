"""A project with secrets: a small stack using them three ways, and the real `bundle` command.

Every run gets a cheap scrypt work factor and, unless a test says otherwise, the passphrase in
$BUNDLE_PASSPHRASE. Commands run in a new session: no controlling terminal, so nothing can
ever wait at a passphrase prompt.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"

# Values long enough to be found anywhere they leak, and one short one: short values are what a
# plain hash would give away.
VALUES = {
    "db_password": "Pa55-db-9f3c1e7a-ONLY-IN-SECRETS",
    "api_token": "tok_5b8d2a-ONLY-IN-SECRETS",
    "tls_key": "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----",
    "pin": "Qz7!",
}

STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[volumes.web-data]

[containers.web]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8080:8080"]
volumes = ["web-data:/data"]
secrets = [
  { name = "api_token", env = "API_TOKEN" },
  { name = "tls_key", file = "/run/secrets/tls.key" },
]
configs = [
  { template = "web/index.html.j2", mount = "/www/index.html" },
  { template = "web/app.conf.j2", mount = "/etc/app.conf", mode = "0600" },
]

[containers.db]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8081:8080"]
secrets = [{ name = "db_password", env = "DB_PASSWORD" }]

[containers.other]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8082:8080"]
"""

INDEX = "page of {{ host.name }}\n"
APP_CONF = """\
[database]
user = "app"
password = "{{ secret("db_password") }}"
pin = {{ secret("pin") }}
"""


@dataclass
class SecretsProject:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # every stdout/stderr, for leak checks
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "builder.cli"])

    @property
    def stacks(self) -> Path:
        return self.root / "stacks"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": "/usr/bin:/bin",
            "NO_COLOR": "1",
            "HOME": str(self.root),
            "BUNDLE_SECRETS_KDF_LOG2N": "10",
            "BUNDLE_PASSPHRASE": PASSPHRASE,
            **self.env,
        }
        merged = {**base, **(env or {})}
        result = subprocess.run(
            [*self.command, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            input=input if input is not None else "",
            env={k: v for k, v in merged.items() if v is not None},
            start_new_session=True,  # no controlling terminal: never a prompt
            timeout=600,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def ok(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, input=input)
        assert result.returncode == 0, f"bundle {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def set(self, label: str, name: str, value: str) -> None:
        self.ok("secrets", "set", label, name, input=value)

    def set_all(self) -> None:
        for name in ("db_password", "api_token", "pin"):
            self.set("web1", name, VALUES[name])
        self.set("shared", "tls_key", VALUES["tls_key"])

    def write(self, rel: str, text: str) -> Path:
        path = self.stacks / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def latest(self, host: str = "web1") -> Path:
        gens = sorted(
            (p for p in (self.bundles / host).iterdir() if p.is_dir() and p.name[0].isdigit()),
            key=lambda p: int(p.name.split("-")[0]),
        )
        return gens[-1]

    def manifest(self, host: str = "web1") -> Any:
        return json.loads((self.latest(host) / "manifest.json").read_text())


def make_secrets_project(root: Path, stack: str = STACK) -> SecretsProject:
    p = SecretsProject(root)
    p.write("web1.toml", stack)
    p.write("templates/web/index.html.j2", INDEX)
    p.write("templates/web/app.conf.j2", APP_CONF)
    return p


@pytest.fixture
def sproject(tmp_path: Path) -> SecretsProject:
    return make_secrets_project(tmp_path / "project")


def stored_values(value: str) -> list[bytes]:
    """The forms a value could leak in: as it is, and as base64 (the wire format)."""
    import base64

    raw = value.encode()
    forms = [raw, base64.b64encode(raw)]
    if "\n" in value:
        forms.append(raw.split(b"\n")[1])  # one line of a multi-line value
    return forms


def files_under(path: Path) -> Iterator[tuple[Path, bytes]]:
    """Every regular file below path, archives (.tar.zst) unpacked."""
    for f in sorted(path.rglob("*")):
        if f.is_symlink() or not f.is_file():
            continue
        data = f.read_bytes()
        yield f, data
        if f.name.endswith(".tar.zst"):
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for member in tar.getmembers():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        yield f / member.name, extracted.read()


def leaks(blobs: list[tuple[str, bytes]], values: dict[str, str] | None = None) -> list[str]:
    """Where any plaintext value appears: 'name in place'."""
    found = []
    for name, value in (values or VALUES).items():
        for where, data in blobs:
            if any(form in data for form in stored_values(value)):
                found.append(f"{name} in {where}")
    return found
