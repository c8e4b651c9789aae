"""Delivery and activation with secrets against a folder standing in for a server (files only)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from .conftest import VALUES, SecretsProject, files_under, leaks


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_push_activate_rotate_rollback_gc(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    p.ok("build", "web1")
    server = p.root / "server"
    server.mkdir()
    state = server / "var/lib/bundle"

    pushed = p.json("push", "web1", "--target", str(server))
    assert pushed["secrets_sent"] == ["api_token", "db_password", "pin", "tls_key"]
    m1 = p.manifest()
    for name, entry in m1["secrets"].items():
        stored = state / "secrets" / name / entry["fingerprint"]
        assert stored.read_text() == VALUES[name]
        assert mode(stored) == 0o600 and mode(stored.parent) == 0o700
    assert mode(state / "secrets") == 0o700
    again = p.json("push", "web1", "--target", str(server))
    assert again["secrets_sent"] == []  # already there: no value travels twice

    report = p.json("activate", "web1", "--generation", "1", "--target", str(server))
    assert report["secrets"]["files_completed"] == ["files/web/app.conf"]
    ident1 = m1["rendered"]["files/web/app.conf"]["id"]
    completed = state / "rendered" / ident1 / "files/web/app.conf"
    assert completed.read_text() == (
        f'[database]\nuser = "app"\npassword = "{VALUES["db_password"]}"\npin = {VALUES["pin"]}\n'
    )
    assert mode(completed) == 0o600 and mode(state / "rendered") == 0o700
    assert mode(state / "rendered" / ident1) == 0o700
    unit = (server / "etc/containers/systemd/web.container").read_text()
    assert f"Volume=/var/lib/bundle/rendered/{ident1}/files/web/app.conf:/etc/app.conf:ro" in unit

    # rotate the database password: only its units change, only its value travels
    p.set("web1", "db_password", "rotated-db-ONLY-IN-SECRETS")
    switched = p.json("switch", "web1", "--target", str(server))
    assert switched["to"] == 2
    assert switched["plan"]["restart"] == ["db.container", "web.container"]
    assert "other.container" in switched["plan"]["leave"]
    m2 = p.manifest()
    ident2 = m2["rendered"]["files/web/app.conf"]["id"]
    assert ident2 != ident1
    assert (
        "rotated-db-ONLY-IN-SECRETS"
        in (state / "rendered" / ident2 / "files/web/app.conf").read_text()
    )
    assert sorted((state / "secrets/db_password").iterdir()) == sorted(
        state / "secrets/db_password" / m["secrets"]["db_password"]["fingerprint"] for m in (m1, m2)
    )
    diff = p.ok("diff", "web1", "1", "2").stdout
    assert "secret db_password changed" in diff

    # back to 1: its own versions are still on the server
    back = p.json("rollback", "web1", "--target", str(server))
    assert back["to"] == 1 and back["result"] == "ok"
    unit = (server / "etc/containers/systemd/web.container").read_text()
    assert f"/rendered/{ident1}/" in unit

    # a version gone from the server: activating the generation that needs it is refused
    old_db = state / "secrets/db_password" / m1["secrets"]["db_password"]["fingerprint"]
    old_db.unlink()
    current = (state / "current").readlink()
    r = p.run("activate", "web1", "--generation", "1", "--target", str(server))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: web1: activate to generation 1 refused: secret db_password version "
        f"{m1['secrets']['db_password']['fingerprint'][:12]} is missing (looked in "
        f"{state}/secrets); push generation 1 again from a checkout whose secrets files hold "
        "those values (bundle push HOST --generation 1), or pick another generation"
    ]
    p.ok("activate", "web1", "--generation", "2", "--target", str(server))
    r = p.run("rollback", "web1", "--to", "1", "--target", str(server))
    assert r.returncode == 1 and "rollback to generation 1 refused: secret db_password" in r.stderr
    assert (state / "current").readlink() != current  # still on 2
    assert (state / "current").readlink().name.startswith("2-")

    # pushing generation 1 again cannot bring its value back: the file holds another now
    r = p.run("push", "web1", "--generation", "1", "--target", str(server))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: web1: generation 1 needs the value secret db_password had when it was built, "
        "and stacks/secrets/web1.enc or stacks/secrets/shared.enc now holds another value; "
        "build a new generation (bundle build web1) and push that"
    )

    # gc keeping one generation drops the versions and completed files only 1 used
    p.set("web1", "pin", "new-pin-ONLY-IN-SECRETS")
    p.ok("switch", "web1", "--target", str(server))
    p.set("web1", "api_token", "new-token-ONLY-IN-SECRETS")
    p.ok("switch", "web1", "--target", str(server))  # 4; gc keeps 4 and 3, drops 1 and 2
    gc = p.json("gc", "web1", "--keep", "1", "--target", str(server))
    assert gc["server"]["removed"] == [1, 2]
    assert gc["server"]["secret_versions_removed"] == 1  # the first pin: only 1 and 2 used it
    left = {(d.name, f.name) for d in (state / "secrets").iterdir() for f in d.iterdir()}
    m3 = p.manifest()
    kept = [json.loads(m.read_text()) for m in (state / "generations").glob("*/manifest.json")]
    assert left == {(n, e["fingerprint"]) for m in kept for n, e in m["secrets"].items()}, (
        left,
        m3["secrets"],
    )
    assert {d.name for d in (state / "rendered").iterdir()} == {
        m["rendered"]["files/web/app.conf"]["id"] for m in kept
    }

    # nothing but STATE/secrets and STATE/rendered holds a value; nothing local does either
    values = {
        **VALUES,
        "db2": "rotated-db-ONLY-IN-SECRETS",
        "pin2": "new-pin-ONLY-IN-SECRETS",
        "token2": "new-token-ONLY-IN-SECRETS",
    }
    blobs = [
        (str(f), d)
        for f, d in files_under(server)
        if not str(f).startswith((str(state / "secrets"), str(state / "rendered")))
    ]
    assert leaks(blobs, values) == []
    local = [(str(f), d) for f, d in files_under(p.bundles)]
    local.append(("command output", "".join(p.outputs).encode()))
    assert leaks(local, values) == []


def switcher(state: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    cwd = next((state / "switchers").iterdir())
    return subprocess.run(
        [sys.executable, "-B", "-m", "activate", *args, "--state", str(state), "--root", "/x"],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        check=False,
    )


def test_the_switcher_accepts_only_versions_a_generation_uses(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    p.ok("build", "web1")
    server = p.root / "server"
    server.mkdir()
    p.ok("push", "web1", "--target", str(server))
    state = server / "var/lib/bundle"
    fp = p.manifest()["secrets"]["pin"]["fingerprint"]
    other = "0" * 64
    r = switcher(
        state,
        "secrets-have",
        stdin=json.dumps(
            [{"name": "pin", "fingerprint": fp}, {"name": "x", "fingerprint": other}]
        ).encode(),
    )
    assert r.returncode == 0 and json.loads(r.stdout)["missing"] == [
        {"name": "x", "fingerprint": other}
    ]
    body = {"secrets": [{"name": "pin", "fingerprint": other, "value": "eA=="}]}
    r = switcher(state, "secrets-receive", "--generation", "1", stdin=json.dumps(body).encode())
    assert r.returncode == 2
    assert r.stderr.decode().strip() == (
        "activate: secrets-receive: generation 1 does not use pin version 000000000000"
    )
    r = switcher(state, "secrets-receive", "--generation", "1", stdin=b'{"secrets": [{"nam')
    assert r.returncode == 2 and b"nam" not in r.stderr  # never echoes what it was sent


SCRIPT_STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[scripts.report]
template = "report.sh.j2"
on_calendar = "daily"
"""


def test_a_script_template_with_a_secret_runs_from_the_completed_copy(tmp_path: Path) -> None:
    from .conftest import make_secrets_project

    p = make_secrets_project(tmp_path / "project", SCRIPT_STACK)
    p.write("templates/report.sh.j2", '#!/bin/sh\ncurl -u "me:{{ secret("pin") }}" https://x\n')
    p.set("web1", "pin", VALUES["pin"])
    p.ok("build", "web1")
    server = p.root / "server"
    server.mkdir()
    p.ok("switch", "web1", "--target", str(server))
    ident = p.manifest()["rendered"]["scripts/report.sh"]["id"]
    unit = (server / "etc/systemd/system/report.service").read_text()
    assert f"ExecStart=/var/lib/bundle/rendered/{ident}/scripts/report.sh\n" in unit
    done = server / "var/lib/bundle/rendered" / ident / "scripts/report.sh"
    assert done.read_text() == f'#!/bin/sh\ncurl -u "me:{VALUES["pin"]}" https://x\n'
    assert mode(done) == 0o755 and mode(done.parent) == 0o700
    assert VALUES["pin"].encode() not in (p.latest() / "scripts/report.sh").read_bytes()
