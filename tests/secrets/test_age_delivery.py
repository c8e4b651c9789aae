"""Secrets delivered as age files, opened by the server with its own SSH host key.

The project's secrets are age files made by the real `age` command (AGE_FILES/NAME.age); the
version of each is the SHA-256 of its file, and `bundle` runs through tests/secrets/age_shim.py,
which builds and pushes them that way. The values in stacks/secrets/*.enc are placeholders that
must never reach the server.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder.base.errors import InputError
from builder.bundle.store import Store
from builder.deploy import secrets_push
from tests.harness import Target

from .conftest import VALUES, SecretsProject, make_secrets_project
from .test_on_server import in_container, project_for

SHIM = Path(__file__).with_name("age_shim.py")
STATE = "/var/lib/bundle"
LABELS = {"db_password": "web1", "api_token": "web1", "pin": "web1", "tls_key": "shared"}


def ssh_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def encrypt(value: str, *public_keys: Path) -> bytes:
    args = [a for key in public_keys for a in ("-R", str(key))]
    return subprocess.run(
        ["age", *args], input=value.encode(), capture_output=True, check=True
    ).stdout


def age_project(p: SecretsProject, host_pub: Path) -> Path:
    """Placeholders in the .enc files, the real values in age files to the host's key."""
    folder = p.stacks / "age"  # in the tree, so a changed file makes a new build
    folder.mkdir()
    p.command = [sys.executable, str(SHIM)]
    p.env["AGE_FILES"] = str(folder)
    for name, label in LABELS.items():
        p.set(label, name, f"placeholder-{name}")
        (folder / f"{name}.age").write_bytes(encrypt(VALUES[name], host_pub))
    return folder


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def switcher(state: Path, root: Path, *args: str, stdin: Any) -> subprocess.CompletedProcess[str]:
    cwd = next((state / "switchers").iterdir())
    return subprocess.run(
        [sys.executable, "-B", "-m", "activate", *args, "--state", str(state), "--root", str(root)],
        cwd=cwd,
        input=json.dumps(stdin),
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_folder_server_opens_age_files_with_its_host_key(tmp_path: Path) -> None:
    p = make_secrets_project(tmp_path / "project")
    server = p.root / "server"
    host_key = ssh_key(server / "etc/ssh/ssh_host_ed25519_key")
    other_key = ssh_key(tmp_path / "other/id_ed25519")
    folder = age_project(p, Path(f"{host_key}.pub"))
    state = server / "var/lib/bundle"

    # one file made for another key only: the whole delivery is refused, nothing is stored
    (folder / "pin.age").write_bytes(encrypt(VALUES["pin"], Path(f"{other_key}.pub")))
    r = p.run("switch", "web1", "--target", str(server))
    assert r.returncode == 1, r.stdout + r.stderr  # the server refused, as for every switcher error
    public = Path(f"{host_key}.pub").read_text().split()[1]
    assert one_line(r) == (
        "error: web1: secrets-receive: secret pin: not encrypted to this host's key "
        f"ssh-ed25519 {public}; add this key to the secret's recipients (bundle secrets "
        "recipients add) and push again"
    )
    assert not (state / "secrets").exists() or list((state / "secrets").iterdir()) == []

    (folder / "pin.age").write_bytes(
        encrypt(VALUES["pin"], Path(f"{other_key}.pub"), Path(f"{host_key}.pub"))
    )
    switched = p.json("switch", "web1", "--target", str(server))
    assert switched["result"] == "ok", switched
    manifest = p.manifest()
    for name, entry in manifest["secrets"].items():
        assert (
            entry["fingerprint"]
            == hashlib.sha256((folder / f"{name}.age").read_bytes()).hexdigest()
        )
        stored = state / "secrets" / name / entry["fingerprint"]
        assert stored.read_text() == VALUES[name]
        assert mode(stored) == 0o600 and mode(stored.parent) == 0o700
    completed = next((state / "rendered").rglob("app.conf")).read_text()
    assert f'password = "{VALUES["db_password"]}"' in completed
    assert "placeholder" not in "".join(p.outputs) and "placeholder" not in completed

    # the switcher itself: a file that is not the version it is sent as, a host without a key
    pin = manifest["secrets"]["pin"]["fingerprint"]
    other = base64.b64encode(encrypt("x", Path(f"{host_key}.pub"))).decode()
    body = {"secrets": [{"name": "pin", "fingerprint": pin, "age": other}]}
    r = switcher(state, server, "secrets-receive", "--generation", "2", stdin=body)
    assert (r.returncode, r.stderr) == (
        2,
        f"activate: secrets-receive: secret pin: the age file is not version {pin[:12]} (its "
        "SHA-256 differs); build and push again\n",
    )
    right = base64.b64encode((folder / "pin.age").read_bytes()).decode()
    body = {"secrets": [{"name": "pin", "fingerprint": pin, "age": right}]}
    r = switcher(state, tmp_path / "nowhere", "secrets-receive", "--generation", "2", stdin=body)
    assert (r.returncode, r.stderr) == (
        1,
        f"activate: secrets-receive: cannot read this host's key {tmp_path}/nowhere/etc/ssh/"
        "ssh_host_ed25519_key (No such file or directory); the host needs an ed25519 SSH host "
        "key to open secrets sent encrypted (ssh-keygen -A makes one)\n",
    )


def test_a_generation_whose_switcher_predates_age_items_is_not_sent_them(tmp_path: Path) -> None:
    p = make_secrets_project(tmp_path / "project")
    host_key = ssh_key(tmp_path / "host/ssh_host_ed25519_key")
    age_project(p, Path(f"{host_key}.pub"))
    p.ok("build", "web1")
    gen = Store(p.bundles, "web1").get(1)
    manifest = gen.load_manifest()
    assert secrets_push.server_decrypts(manifest)
    old = dataclasses.replace(
        manifest, files={k: v for k, v in manifest.files.items() if "age" not in k}
    )

    class Old:
        host, number = gen.host, gen.number

        def load_manifest(self) -> Any:
            return old

    with pytest.raises(InputError) as e:
        secrets_push.deliver_age(None, Old(), {})  # type: ignore[arg-type]
    assert str(e.value) == (
        f"web1: generation {gen.number}'s switcher predates secrets the server decrypts itself; "
        "push its secrets as values, or build and push a new generation"
    )


def test_a_real_server_opens_age_files_with_its_host_key(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    t = target
    p = project_for(tmp_path, t)
    host_pub = tmp_path / "ssh_host_ed25519_key.pub"
    host_pub.write_text(t.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout)
    age_project(p, host_pub)
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert in_container(t, "web", 'printf %s "$API_TOKEN"') == VALUES["api_token"]
    assert in_container(t, "web", "cat /run/secrets/tls.key") == VALUES["tls_key"]
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    conf = in_container(t, "web", "cat /etc/app.conf")
    assert f'password = "{VALUES["db_password"]}"' in conf and f"pin = {VALUES['pin']}" in conf
    fp = p.manifest()["secrets"]["db_password"]["fingerprint"]
    listing = t.ssh(f"stat -c '%a %U' {STATE}/secrets/db_password {STATE}/secrets/db_password/{fp}")
    assert listing.stdout.split() == ["700", "root", "600", "root"]
