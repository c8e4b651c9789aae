"""`bundle secrets ...` and the build with secrets, as a user runs them (no server)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tests.build.conftest import make_project

from .conftest import PASSPHRASE, VALUES, SecretsProject, files_under, leaks


def test_set_list_remove(sproject: SecretsProject) -> None:
    p = sproject
    out = p.ok("secrets", "set", "web1", "db_password", input=VALUES["db_password"] + "\n")
    assert out.stdout == "web1: db_password added in stacks/secrets/web1.enc\n"
    again = p.ok("secrets", "set", "web1", "db_password", input=VALUES["db_password"])
    assert "already has that value" in again.stdout
    p.set("shared", "tls_key", VALUES["tls_key"])
    listing = p.ok("secrets", "list", "web1").stdout.splitlines()
    assert listing == [
        "db_password  stacks/secrets/web1.enc",
        "tls_key      stacks/secrets/shared.enc",
    ]
    assert p.json("secrets", "list", "web1")["secrets"][0] == {
        "name": "db_password",
        "file": "stacks/secrets/web1.enc",
    }
    assert p.ok("secrets", "remove", "web1", "db_password").stdout.startswith(
        "web1: db_password removed"
    )
    assert p.ok("secrets", "list", "web1").stdout.splitlines() == [
        "tls_key  stacks/secrets/shared.enc"
    ]
    assert not leaks([("output", "".join(p.outputs).encode())])


def test_set_refuses_bad_input(sproject: SecretsProject) -> None:
    p = sproject
    for args, stdin, message in (
        (("web1", "Bad"), "x", "invalid secret name 'Bad'"),
        (("web1", "ok"), "\n", "ok: empty value on stdin"),
        (("nohost", "ok"), "x", "stacks/nohost.toml does not exist"),
    ):
        r = p.run("secrets", "set", *args, input=stdin)
        assert r.returncode == 2, r
        assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
    assert not (p.stacks / "secrets/web1.enc").exists()


EDITOR = """#!/bin/sh
# records what it was given, then replaces one value and adds another
stat -c '%a' "$1" > "{log}/mode"
dirname "$1" > "{log}/dir"
cp "$1" "{log}/seen"
sed -i 's/^api_token = .*/api_token = "rotated-token-value"/' "$1"
echo "extra = 'two words'" >> "$1"
"""


def test_edit_uses_a_private_temporary_file(sproject: SecretsProject, tmp_path: Path) -> None:
    p = sproject
    p.set("web1", "api_token", VALUES["api_token"])
    log = tmp_path / "editor-log"
    log.mkdir()
    editor = tmp_path / "editor.sh"
    editor.write_text(EDITOR.format(log=log))
    editor.chmod(0o755)
    p.env["EDITOR"] = str(editor)
    out = p.ok("secrets", "edit", "web1")
    assert out.stdout == (
        "web1: saved stacks/secrets/web1.enc: 1 added (extra), 1 changed (api_token), 0 removed\n"
    )
    assert (log / "mode").read_text().strip() == "600"
    assert f'api_token = "{VALUES["api_token"]}"' in (log / "seen").read_text()
    assert not Path((log / "dir").read_text().strip()).exists()  # removed afterwards
    assert p.ok("secrets", "list", "web1").stdout.split() == [
        "api_token",
        "stacks/secrets/web1.enc",
        "extra",
        "stacks/secrets/web1.enc",
    ]
    # an editor that fails leaves the file as it was
    editor.write_text("#!/bin/sh\nexit 3\n")
    before = (p.stacks / "secrets/web1.enc").read_bytes()
    r = p.run("secrets", "edit", "web1")
    assert r.returncode == 2 and "the editor exited with 3" in r.stderr
    assert (p.stacks / "secrets/web1.enc").read_bytes() == before


def test_rekey_keeps_fingerprints(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    p.ok("build", "web1")
    first = p.manifest()["secrets"]
    r = p.run("secrets", "rekey", "web1", env={"BUNDLE_NEW_PASSPHRASE": "another one"})
    assert r.returncode == 0, r.stderr
    p.env["BUNDLE_PASSPHRASE_WEB1"] = "another one"
    # the file changed, so the build reads it again; the fingerprints did not: same bundle
    assert "web1 is up to date at generation 1" in p.ok("build", "web1").stdout
    assert p.manifest()["secrets"] == first


def one_error(result: object, code: int = 2) -> str:
    rc, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert rc == code, (rc, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_wrong_passphrase_tampered_file_undefined_secret(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    line = one_error(p.run("build", "web1", env={"BUNDLE_PASSPHRASE": "wrong"}))
    assert line == (
        "error: stacks/secrets/shared.enc: wrong passphrase (from $BUNDLE_PASSPHRASE); "
        "nothing was built or changed"
    )
    enc = p.stacks / "secrets/web1.enc"
    good = enc.read_bytes()
    lines = good.decode().split("\n")
    lines[7] = lines[7][:5] + ("A" if lines[7][5] != "A" else "B") + lines[7][6:]
    enc.write_text("\n".join(lines))
    line = one_error(p.run("build", "web1"))
    assert line.startswith(
        "error: stacks/secrets/web1.enc: the file was changed after it was encrypted"
    )
    enc.write_bytes(good)
    p.ok("secrets", "remove", "web1", "api_token")
    r = p.run("build", "web1")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: stacks/web1.toml:12: containers.web.secrets[0].name: secret 'api_token' is not "
        "defined in stacks/secrets/web1.enc or stacks/secrets/shared.enc; add it: "
        "bundle secrets set web1 api_token",
        "1 problem; nothing was built or changed",
    ]
    p.set("web1", "api_token", VALUES["api_token"])
    p.ok("secrets", "remove", "web1", "pin")
    r = p.run("check", "web1")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == (
        "error: stacks/templates/web/app.conf.j2:4: template error: secret 'pin' is not defined "
        "in stacks/secrets/web1.enc or stacks/secrets/shared.enc; add it: "
        "bundle secrets set web1 pin"
    )
    line = one_error(p.run("build", "web1", env={"BUNDLE_PASSPHRASE": None}))
    assert line.startswith("error: stacks/secrets/shared.enc: no passphrase: set")
    assert not leaks([("output", "".join(p.outputs).encode())])


def test_fresh_clone_builds_the_shipped_stacks_without_a_passphrase(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shipped")
    r = project.run("build", "vps1")
    assert r.returncode == 0, r.stderr
    # the shipped stacks name secrets but ship no secrets file: they build, marked unset
    assert re.search(r"\n  \d+ secrets not set yet \(authentik_db_password, ", r.stdout), r.stdout
    assert "push and switch refuse until they are (bundle secrets set vps1 NAME)" in r.stdout
    info = project.run("build", "vps1", "--json")
    assert '"secrets_unset": [' in info.stdout


def test_bundles_and_outputs_hold_no_value(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    first = p.json("build", "web1")
    assert first["secrets_unset"] == []
    m = p.manifest()
    assert set(m["secrets"]) == {"api_token", "db_password", "pin", "tls_key"}
    assert m["secrets"]["db_password"]["used_by"] == ["db.container", "web.container"]
    assert m["secrets"]["pin"]["podman_secret"] is None  # only in a template
    assert m["rendered"]["files/web/app.conf"]["secrets"] == ["db_password", "pin"]
    unit = (p.latest() / "units/quadlet/web.container").read_text()
    fp = m["secrets"]["api_token"]["fingerprint"]
    assert f"Secret=api_token-{fp[:12]},type=env,target=API_TOKEN" in unit
    ident = m["rendered"]["files/web/app.conf"]["id"]
    assert f"Volume=/var/lib/bundle/rendered/{ident}/files/web/app.conf:/etc/app.conf:ro" in unit
    conf = (p.latest() / "files/web/app.conf").read_text()
    assert 'password = "@@bundle-secret:db_password@@"' in conf

    # rotate one secret: only the units that use it change
    closures = {k: u["closure"] for k, u in m["units"].items()}
    p.set("web1", "api_token", "a-new-token-ONLY-IN-SECRETS")
    p.ok("build", "web1")
    m2 = p.manifest()
    changed = sorted(k for k, u in m2["units"].items() if u["closure"] != closures[k])
    assert changed == ["web.container"]
    text = p.ok("diff", "web1").stdout
    assert "secret api_token changed" in text
    diff = p.json("diff", "web1")
    assert diff["secrets"] == [{"name": "api_token", "status": "changed"}]
    assert diff["units"]["changed"] == ["web.container"]
    p.ok("diff", "web1", "--stat")
    p.ok("generations", "web1", "--json")
    p.ok("secrets", "list", "web1", "--json")

    values = {**VALUES, "new_token": "a-new-token-ONLY-IN-SECRETS"}
    blobs = [(str(f), data) for f, data in files_under(p.bundles)]
    assert len(blobs) > 20
    blobs.append(("command output", "".join(p.outputs).encode()))
    assert leaks(blobs, values) == []
    assert all(not leaks([(str(f), d)], values) for f, d in files_under(p.stacks / "secrets"))


def test_push_refuses_a_generation_built_without_its_secrets(sproject: SecretsProject) -> None:
    p = sproject
    p.ok("build", "web1")
    server = p.root / "server"
    server.mkdir()
    line = one_error(p.run("push", "web1", "--target", str(server)))
    assert line == (
        "error: web1: generation 1 was built without 4 secrets (api_token, db_password, pin, "
        "tls_key); set them (bundle secrets set web1 NAME), build, and push the new generation"
    )
    assert not any(server.iterdir())
    assert one_error(p.run("switch", "web1", "--target", str(server))).startswith(
        "error: web1: generation 1 was built without 4 secrets"
    )


def test_secrets_files_are_plain_text_and_never_executable(sproject: SecretsProject) -> None:
    p = sproject
    p.set("web1", "pin", VALUES["pin"])
    enc = p.stacks / "secrets/web1.enc"
    assert stat.S_IMODE(enc.stat().st_mode) == 0o644
    assert enc.read_text().startswith("bundle-secrets 1\nfile: web1\n")
    assert not [f for f in os.listdir(enc.parent) if f.startswith(".")]
    assert PASSPHRASE.encode() not in enc.read_bytes()


def test_a_filter_on_a_secret_marker_is_refused(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    p.write("templates/web/app.conf.j2", 'pin = {{ secret("pin") | upper }}\n')
    r = p.run("build", "web1")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == (
        "error: stacks/templates/web/app.conf.j2: files/web/app.conf: a secret() marker was "
        'changed after secret() made it (by a filter?); write {{ secret("NAME") }} alone, the '
        "server fills in the value as it is"
    )
