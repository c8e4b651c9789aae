"""Secrets on a real server: build, push and activate a stack that uses them three ways, rotate
one, roll back, lose a version, gc; then look for every plaintext value everywhere it must not be.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.conftest import make_deploy_project

from .conftest import STACK, VALUES, SecretsProject, files_under, leaks, make_secrets_project

ROTATED = "rotated-db-9c1f4e-ONLY-IN-SECRETS"
STATE = "/var/lib/bundle"


def project_for(tmp_path: Path, target: Target, stack: str = STACK) -> SecretsProject:
    deploy = make_deploy_project(tmp_path, target, stack.replace("web1.example.org", "web1-test"))
    p = make_secrets_project(deploy.root, stack.replace("web1.example.org", "web1-test"))
    p.env["HOME"] = str(deploy.home)  # its ~/.ssh/config reaches the test server
    return p


def in_container(t: Target, container: str, command: str) -> str:
    return t.ssh(f"podman exec {container} sh -c '{command}'").stdout


def main_pid(t: Target, service: str) -> int:
    return int(t.ssh(f"systemctl show -p MainPID --value {service}").stdout.strip())


def fetch(t: Target, port: int) -> str:
    import urllib.request

    last: Exception | None = None
    for _ in range(50):
        try:
            with urllib.request.urlopen(t.url(port), timeout=2) as r:
                return str(r.read().decode())
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"port {port} did not answer: {last}")


def files_of(t: Target, *folders: str) -> list[tuple[str, bytes]]:
    """Every regular file below the server's folders (relative to /), as bytes."""
    tar = subprocess.run(
        [*t.ssh_argv(), "--", f"tar -C / -cf - {' '.join(folders)} 2>/dev/null"],
        capture_output=True,
        timeout=120,
        check=False,
    ).stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            f = archive.extractfile(member) if member.isfile() else None
            if f is not None:
                out.append(("/" + member.name, f.read()))
    return out


def server_files(t: Target) -> list[tuple[str, bytes]]:
    """Every file of the state folder and the unit folders, as bytes, and the journal."""
    out = files_of(t, "var/lib/bundle", "etc/containers/systemd", "etc/systemd/system")
    journal = t.ssh("journalctl -b --no-pager -o cat", timeout=120).stdout.encode()
    out.append(("journalctl -b", journal))
    return out


def podman_secrets(t: Target) -> set[str]:
    return set(t.ssh("podman secret ls --format '{{.Name}}'").stdout.split())


def test_secrets_on_a_real_server(tmp_path: Path, target: Target, registry: Any) -> None:
    t = target
    p = project_for(tmp_path, t)
    p.set_all()
    p.ok("build", "web1")
    m1 = p.manifest()

    pushed = p.json("push", "web1")
    assert pushed["secrets_sent"] == ["api_token", "db_password", "pin", "tls_key"]
    p.ok("activate", "web1", "--generation", "1")

    # each way in: env, file, and a config file completed on the server
    assert in_container(t, "web", 'printf %s "$API_TOKEN"') == VALUES["api_token"]
    assert in_container(t, "web", "cat /run/secrets/tls.key") == VALUES["tls_key"]
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    conf = in_container(t, "web", "cat /etc/app.conf")
    assert f'password = "{VALUES["db_password"]}"' in conf and f"pin = {VALUES['pin']}" in conf
    assert fetch(t, 8080) == "page of web1\n"
    ident1 = m1["rendered"]["files/web/app.conf"]["id"]
    listing = t.ssh(
        f"stat -c '%a %U %n' {STATE}/secrets {STATE}/secrets/db_password "
        f"{STATE}/secrets/db_password/* {STATE}/rendered {STATE}/rendered/{ident1} "
        f"{STATE}/rendered/{ident1}/files/web/app.conf"
    ).stdout.splitlines()
    assert [line.split()[:2] for line in listing] == [
        ["700", "root"],
        ["700", "root"],
        ["600", "root"],
        ["700", "root"],
        ["700", "root"],
        ["600", "root"],
    ]
    fp = {n: e["fingerprint"] for n, e in m1["secrets"].items()}
    assert podman_secrets(t) >= {
        f"api_token-{fp['api_token'][:12]}",
        f"tls_key-{fp['tls_key'][:12]}",
        f"db_password-{fp['db_password'][:12]}",
    }

    # rotate the database password: exactly the two units that use it restart
    other_pid = main_pid(t, "other.service")
    p.set("web1", "db_password", ROTATED)
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert switched["plan"]["restart"] == ["db.container", "web.container"]
    assert main_pid(t, "other.service") == other_pid
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == ROTATED
    assert f'password = "{ROTATED}"' in in_container(t, "web", "cat /etc/app.conf")
    assert in_container(t, "web", 'printf %s "$API_TOKEN"') == VALUES["api_token"]
    text = p.ok("diff", "web1").stdout
    assert "secret db_password changed" in text
    assert p.json("diff", "web1")["secrets"] == [{"name": "db_password", "status": "changed"}]
    p.ok("status", "web1", "--json")
    p.ok("generations", "web1", "--remote", "--json")

    # rollback puts the old version back
    back = p.json("rollback", "web1")
    assert back["to"] == 1 and back["result"] == "ok", back
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    assert f'password = "{VALUES["db_password"]}"' in in_container(t, "web", "cat /etc/app.conf")

    # look for every value wherever it must not be, on the server and here
    values = {**VALUES, "rotated": ROTATED}
    found = server_files(t)
    inside = [(w, d) for w, d in found if w.startswith((f"{STATE}/secrets/", f"{STATE}/rendered/"))]
    m2 = p.manifest()
    ident2 = m2["rendered"]["files/web/app.conf"]["id"]
    where = sorted(leaks(inside, {"db_password": VALUES["db_password"], "rotated": ROTATED}))
    assert where == [
        f"db_password in {STATE}/rendered/{ident1}/files/web/app.conf",
        f"db_password in {STATE}/secrets/db_password/{fp['db_password']}",
        f"rotated in {STATE}/rendered/{ident2}/files/web/app.conf",
        f"rotated in {STATE}/secrets/db_password/{m2['secrets']['db_password']['fingerprint']}",
    ]  # the search finds them where they belong...
    outside = [(w, d) for w, d in found if (w, d) not in inside]
    assert len(outside) > 50
    assert leaks(outside, values) == []  # ...and nowhere else
    local = [(str(f), d) for f, d in files_under(p.bundles)]
    local.append(("command output", "".join(p.outputs).encode()))
    assert leaks(local, values) == []

    # a version gone from the server: going back to the generation that needs it is refused
    p.ok("activate", "web1", "--generation", "2")
    t.ssh(f"rm {STATE}/secrets/db_password/{fp['db_password']}")
    db_pid = main_pid(t, "db.service")
    r = p.run("rollback", "web1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() == (
        "error: web1: rollback to generation 1 refused: secret db_password version "
        f"{fp['db_password'][:12]} is missing (looked in {STATE}/secrets); push generation 1 "
        "again from a checkout whose secrets files hold those values (bundle push HOST "
        "--generation 1), or pick another generation"
    )
    assert json.loads(p.ok("status", "web1", "--json").stdout)["current"] == 2
    assert main_pid(t, "db.service") == db_pid  # nothing was touched

    # gc: the versions only generation 1 used go, with their podman secrets
    p.set("web1", "pin", "new-pin-ONLY-IN-SECRETS")
    p.ok("switch", "web1")
    p.set("web1", "api_token", "new-token-ONLY-IN-SECRETS")
    p.ok("switch", "web1")
    gc = p.json("gc", "web1", "--keep", "1")
    assert gc["server"]["removed"] == [1, 2]
    assert gc["server"]["podman_secrets_removed"] == [f"db_password-{fp['db_password'][:12]}"]
    assert f"pin-{fp['pin'][:12]}" not in podman_secrets(t)  # pin is not a podman secret...
    assert f"db_password-{fp['db_password'][:12]}" not in podman_secrets(t)
    assert f"api_token-{fp['api_token'][:12]}" in podman_secrets(t)  # 3 still uses it
