"""Backups and restores on a rootless host (docs/rootless.md): the same story as
test_on_server.py, run by the user's own systemd with restic and a repository in its home.

The server is prepared as docs/rootless.md says (a user, lingering, the deployer's key); restic
is copied onto it as tests/backup does. Files a container user owns inside the volume keep
that owner through the backup and the restore (the data is read and written inside the user
namespace).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from typing import Any

import pytest

from tests.harness import Target
from tests.secrets.conftest import SecretsProject, make_secrets_project
from tests.server.test_rootless import USER, prepare_user, rootless_project

from .conftest import (
    BUCKET,
    PASSWORD,
    S3_KEY,
    S3_SECRET,
    STACK,
    Pings,
    S3Server,
    fetch,
    install_restic,
)

HOME = f"/home/{USER}"
REPOSITORY = f"{HOME}/backup-repo"
ROOTLESS_STACK = STACK.replace(
    'address = "web1-test"',
    f'address = "web1-test"\nssh_user = "{USER}"\nrootless = true\nconfirm_timeout = 5',
).replace('repository = "/srv/backup-repo"', f'repository = "{REPOSITORY}"')


def as_user(t: Target, command: str, check: bool = True) -> Any:
    """A command as the rootless user, with its manager's runtime folder (as over SSH)."""
    script = (
        "export XDG_RUNTIME_DIR=/run/user/$(id -u)"
        " DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u)/bus; cd; " + command
    )
    return t.ssh(f"runuser -u {USER} -- sh -c {shlex.quote(script)}", check=check)


def user_out(t: Target, command: str) -> str:
    return str(as_user(t, command).stdout.strip())


def main_pid(t: Target, service: str) -> int:
    return int(user_out(t, f"systemctl --user show -p MainPID --value {service}"))


def write_data(t: Target, text: str) -> None:
    """The page, and a file in a folder that a container user (1000) owns."""
    inner = (
        f"echo {text} > /www/index.html && mkdir -p /www/owned && echo {text} > /www/owned/note.txt"
        " && chown -R 1000:1000 /www/owned && chmod 700 /www/owned"
    )
    as_user(t, f"podman exec site sh -c {shlex.quote(inner)}")


def owner(t: Target) -> str:
    """uid:gid of the file a container user owns, as the container sees it."""
    fields = user_out(t, "podman exec site ls -ln /www/owned/note.txt").split()
    return f"{fields[2]}:{fields[3]}"


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, target: Target, registry: Any, pings: Pings
) -> SecretsProject:
    install_restic(target)
    prepare_user(target)
    stack = ROOTLESS_STACK.format(ping=pings.url)
    deploy = rootless_project(tmp_path_factory.mktemp("rootless-backup"), target, stack)
    p = make_secrets_project(deploy.root, stack)
    p.env["HOME"] = str(deploy.home)
    return p


def test_backup_and_restore_on_a_rootless_host(
    project: SecretsProject, target: Target, pings: Pings
) -> None:
    t, p = target, project
    p.set("web1", "backup_password", PASSWORD)
    p.ok("switch", "web1")
    # the timer is the user's, in its own timers.target
    assert user_out(t, "systemctl --user is-enabled backup.timer") == "enabled"
    assert user_out(t, "systemctl --user is-active backup.timer") == "active"
    assert "backup.timer" in user_out(t, "ls ~/.config/systemd/user/timers.target.wants")
    assert "backup" not in t.ssh("ls /etc/systemd/system").stdout

    write_data(t, "first-data")
    assert fetch(t, 8080) == "first-data\n"
    assert owner(t) == "1000:1000"
    other_pid = main_pid(t, "other.service")

    pings.clear()
    t0 = time.time()
    out = p.ok("backup", "web1", "--now").stdout
    assert out.rstrip().splitlines()[-1].startswith("web1: backup ok in "), out
    assert "site-data: snapshot " in out and "stopping site.service" in out, out
    assert pings.paths() == ["/ping/web1/start", "/ping/web1"]
    # run by the user: its repository, state, cache and metric, all in its home
    assert t.ssh(f"stat -c %U {REPOSITORY}/config").stdout.strip() == USER
    last = json.loads(t.read_file(f"{HOME}/.local/state/bundle/backup/last.json"))
    assert last["result"] == "ok" and last["errors"] == []
    metric = t.read_file(f"{HOME}/.local/state/node-exporter/backup.prom")
    m = re.search(
        r'^bundle_backup_last_success_timestamp_seconds\{host="web1"\} (\d+)$', metric, re.M
    )
    assert m and t0 - 5 <= int(m.group(1)) <= time.time() + 5, metric
    # the path recorded is a rootful host's: snapshots move between the two
    snapshots = json.loads(
        user_out(
            t,
            f"RESTIC_PASSWORD_FILE=$(ls ~/.local/state/bundle/rendered/*/scripts/"
            f"backup.secret/password) restic -r {REPOSITORY} snapshots --json",
        )
    )
    assert [s["paths"] for s in snapshots] == [["/run/bundle-backup/volumes/site-data"]]
    listing = p.json("restore", "web1", "site", "--list")  # the script, run by the user
    assert [(s["volume"], s["run"]) for s in listing["snapshots"]] == [("site-data", last["run"])]
    assert user_out(t, "systemctl --user is-active site.service") == "active"
    assert main_pid(t, "other.service") == other_pid  # left alone
    # its mounts were private to the run: nothing is left on the host
    assert not t.ssh(
        "ls -d /run/bundle-backup /tmp/bundle-backup-run-* 2>/dev/null || true"
    ).stdout.strip()

    # the volume is lost; the restore brings back what was backed up, with its owners
    write_data(t, "second-data")
    as_user(t, "systemctl --user stop site.service && podman volume rm site-data")
    out = p.ok("restore", "web1", "site").stdout
    assert "site-data: restored" in out, out
    assert fetch(t, 8080) == "first-data\n"
    assert user_out(t, "podman exec site cat /www/owned/note.txt") == "first-data"
    assert owner(t) == "1000:1000"
    # on the host, that owner is one of the user's subordinate ids, not the user itself
    data = user_out(t, "podman volume inspect site-data --format '{{.Mountpoint}}'")
    host_owner = t.ssh(f"stat -c %u {data}/owned/note.txt").stdout.strip()
    uid = t.ssh(f"id -u {USER}").stdout.strip()
    assert host_owner != uid and int(host_owner) > 65535, host_owner
    pid = main_pid(t, "site.service")
    assert t.ssh(f"ps -o user= -p {pid}").stdout.strip() == USER
    assert main_pid(t, "other.service") == other_pid

    # the script refuses root on a rootless host, with what to do
    r = t.ssh(f"python3 -B {HOME}/.local/state/bundle/current/scripts/backup.py", check=False)
    assert r.returncode == 2
    assert "web1 is rootless: run me as its user (apps)" in r.stdout, r.stdout


def test_backup_and_restore_to_s3_on_a_rootless_host(
    project: SecretsProject, target: Target, pings: Pings, s3: S3Server
) -> None:
    t, p = target, project
    s3.create_bucket(BUCKET)
    stack = ROOTLESS_STACK.format(ping=pings.url).replace(
        f'repository = "{REPOSITORY}"\n',
        f'repository = "s3:{s3.endpoint}/{BUCKET}/web1-rootless"\n'
        's3_access_key_secret = "s3_key"\ns3_secret_key_secret = "s3_secret"\n',
    )
    p.write("web1.toml", stack)
    p.set("web1", "s3_key", S3_KEY)
    p.set("web1", "s3_secret", S3_SECRET)
    p.ok("switch", "web1")
    write_data(t, "s3-data")
    pings.clear()
    out = p.ok("backup", "web1", "--now").stdout
    assert "created the restic repository s3:" in out, out
    assert pings.paths() == ["/ping/web1/start", "/ping/web1"]
    assert "<Key>web1-rootless/config</Key>" in s3.keys(BUCKET)

    write_data(t, "after-backup")
    as_user(t, "systemctl --user stop site.service && podman volume rm site-data")
    p.ok("restore", "web1", "site")
    assert fetch(t, 8080) == "s3-data\n"
    assert owner(t) == "1000:1000"
    assert user_out(t, "systemctl --user is-active site.service other.service").split() == [
        "active",
        "active",
    ]
