"""`[secrets] host_key = true`: age files are also encrypted to the host's pinned SSH host key,
and a push sends them as they are for the server to open; without it, the deploying machine
decrypts and sends the values. Both end in the container seeing the value."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

from tests.harness import Target

from .conftest import VALUES, files_under, leaks, make_secrets_project
from .test_age import keygen
from .test_on_server import in_container, project_for, server_files

STATE = "/var/lib/bundle"


def test_host_key_needs_a_pinned_ed25519_key(tmp_path: Path) -> None:
    p = make_secrets_project(tmp_path / "project")
    p.env["HOME"] = str(tmp_path / "home")
    me = keygen(tmp_path / "home/.config/bundle/age/keys.txt")
    text = (p.stacks / "web1.toml").read_text()
    p.write("web1.toml", text + f'\n[secrets]\nrecipients = ["{me}"]\nhost_key = true\n')
    r = p.run("secrets", "set", "web1", "pin", input="1234")
    assert r.returncode == 2
    assert r.stderr == (
        "error: web1: no host key of web1.example.org is pinned in known_hosts yet; pin it "
        "first: bundle status web1 --accept-new\n"
    )
    ssh = tmp_path / "home/.ssh"
    ssh.mkdir()
    (ssh / "known_hosts").write_text("web1.example.org ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n")
    r = p.run("secrets", "set", "web1", "pin", input="1234")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert (
        "the pinned host key of web1.example.org is ssh-rsa; age secrets need an ssh-ed25519"
        in r.stderr
    )
    assert not (p.stacks / "secrets/web1").exists()  # nothing half-written

    # pinned: the files go to it too, and the list in the stack stays as written
    server = tmp_path / "server-key/ssh_host_ed25519_key"
    server.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(server)], check=True)
    public = server.with_suffix(".pub").read_text().split()
    (ssh / "known_hosts").write_text(f"web1.example.org {public[0]} {public[1]}\n")
    p.ok("secrets", "set", "web1", "pin", input="1234")
    opened = subprocess.run(
        ["age", "-d", "-i", str(server), str(p.stacks / "secrets/web1/pin.age")],
        capture_output=True,
        check=True,
    )
    assert opened.stdout == b"1234"
    bob = keygen(tmp_path / "bob.txt")
    p.ok("secrets", "recipients", "add", "web1", bob)
    stack = tomllib.loads((p.stacks / "web1.toml").read_text())
    assert stack["secrets"] == {"recipients": [me, bob], "host_key": True}
    p.ok("secrets", "check", "web1")
    assert p.ok("secrets", "recipients", "list", "web1").stdout.split("\n")[:3] == [
        me,
        bob,
        f"{public[0]} {public[1]} host:web1",
    ]


def test_a_real_server_opens_what_it_is_sent_and_is_sent_values_otherwise(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    t = target
    p = project_for(tmp_path, t)
    home = Path(p.env["HOME"])
    keys = home / ".config/bundle/age/keys.txt"
    me = keygen(keys)
    text = (p.stacks / "web1.toml").read_text()
    p.write("web1.toml", text + f'\n[secrets]\nrecipients = ["{me}"]\nhost_key = true\n')
    p.set_all()
    host_pub = t.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
    assert host_pub in p.ok("secrets", "recipients", "list", "web1").stdout
    p.ok("secrets", "check", "web1")

    # the server decrypts: the deploying machine holds no identity at all during the switch
    keys.rename(home / "keys.away")
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    assert in_container(t, "web", "cat /run/secrets/tls.key") == VALUES["tls_key"]
    assert f"pin = {VALUES['pin']}" in in_container(t, "web", "cat /etc/app.conf")
    (home / "keys.away").rename(keys)

    # without the host key: encrypted again (new versions), the deployer decrypts and sends
    p.write("web1.toml", text + f'\n[secrets]\nrecipients = ["{me}"]\nhost_key = false\n')
    r = p.run("build", "web1")
    assert r.returncode == 2 and "encrypted to an SSH key that is not listed" in r.stderr
    p.ok("secrets", "recipients", "apply", "web1")
    p.ok("secrets", "check", "web1")
    p.ok("build", "web1")
    pushed = p.json("push", "web1")  # new versions, sent as values decrypted here
    assert pushed["secrets_sent"] == ["api_token", "db_password", "pin", "tls_key"]
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    assert in_container(t, "web", 'printf %s "$API_TOKEN"') == VALUES["api_token"]
    found = server_files(t)
    outside = [
        (w, d) for w, d in found if not w.startswith(f"{STATE}/secrets/") and "/rendered/" not in w
    ]
    assert leaks(outside) == []
    local = [(str(f), d) for f, d in files_under(p.bundles)]
    local.append(("command output", "".join(p.outputs).encode()))
    assert leaks(local) == []


def test_a_rootless_host_cannot_open_its_own_secrets(tmp_path: Path) -> None:
    p = make_secrets_project(tmp_path / "project")
    me = keygen(p.root / ".config/bundle/age/keys.txt")
    text = (
        (p.stacks / "web1.toml")
        .read_text()
        .replace('address = "web1.example.org"', 'address = "web1.example.org"\nrootless = true')
    )
    p.write("web1.toml", text + f'\n[secrets]\nrecipients = ["{me}"]\nhost_key = true\n')
    r = p.run("secrets", "set", "web1", "pin", input="1234")
    assert r.returncode == 2
    assert r.stderr == (
        "error: stacks/web1.toml: secrets.host_key: web1 is rootless, and its switcher cannot "
        "read the host key (root only); set host_key = false for it\n"
    )
    assert not (p.stacks / "secrets/web1").exists()
