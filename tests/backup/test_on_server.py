"""Backups and restores on a real server with restic: a local repository, then S3 (moto).

The story: data written into a stateful container's volume is backed up by `bundle backup
--now` (the container is stopped for it and started again, the others are left alone, the
healthchecks URL is pinged, the metric is written), the volume is wiped, and `bundle restore`
brings the data back; a failing backup pings /fail and still starts the container again.
"""

from __future__ import annotations

import json
import re
import time

from tests.harness import Target
from tests.secrets.conftest import SecretsProject

from .conftest import (
    BUCKET,
    PASSWORD,
    S3_KEY,
    S3_SECRET,
    STACK,
    Pings,
    S3Server,
    fetch,
    main_pid,
)

METRIC = "/var/lib/node-exporter/backup.prom"


def write_page(t: Target, text: str) -> None:
    t.ssh(f"podman exec site sh -c 'echo {text} > /www/index.html; echo extra > /www/extra.txt'")


def wipe_volume(t: Target) -> None:
    """What a lost disk or a bad migration leaves: the volume is gone."""
    t.ssh("systemctl stop site.service && podman volume rm site-data")
    assert t.ssh("podman volume exists site-data", check=False).returncode == 1


def metric_time(t: Target) -> int:
    text = t.read_file(METRIC)
    m = re.search(
        r'^bundle_backup_last_success_timestamp_seconds\{host="web1"\} (\d+)$', text, re.M
    )
    assert m, text
    return int(m.group(1))


def test_backup_and_restore_with_a_local_repository(
    server_project: SecretsProject, target: Target, pings: Pings
) -> None:
    t, p = target, server_project
    p.set("web1", "backup_password", PASSWORD)
    p.ok("switch", "web1")
    assert t.ssh("systemctl is-enabled backup.timer").stdout.strip() == "enabled"
    write_page(t, "first-data")
    assert fetch(t, 8080) == "first-data\n"
    site_pid, other_pid = main_pid(t, "site.service"), main_pid(t, "other.service")

    t0 = time.time()
    out = p.ok("backup", "web1", "--now").stdout
    assert out.rstrip().splitlines()[-1].startswith("web1: backup ok in "), out
    assert "site-data: snapshot " in out and "stopping site.service" in out, out
    assert pings.paths() == ["/ping/web1/start", "/ping/web1"]
    assert t0 - 5 <= metric_time(t) <= time.time() + 5
    # the stateful container was stopped for the backup and runs again; the other was left alone
    assert t.ssh("systemctl is-active site.service").stdout.strip() == "active"
    assert main_pid(t, "site.service") != site_pid
    assert main_pid(t, "other.service") == other_pid
    assert fetch(t, 8080) == "first-data\n"
    last = json.loads(t.read_file("/var/lib/bundle/backup/last.json"))
    assert last["result"] == "ok" and last["errors"] == []
    run1 = last["run"]

    listing = p.json("restore", "web1", "site", "--list")
    assert [(s["volume"], s["run"]) for s in listing["snapshots"]] == [("site-data", run1)]
    assert p.ok("restore", "web1", "site", "--list").stdout.splitlines()[1].startswith(run1)

    # the volume is lost; restore brings back what was backed up (and only that)
    write_page(t, "second-data")
    wipe_volume(t)
    out = p.ok("restore", "web1", "site").stdout
    assert "site-data: restored" in out and out.rstrip().endswith("s"), out
    assert t.ssh("systemctl is-active site.service").stdout.strip() == "active"
    assert fetch(t, 8080) == "first-data\n"
    assert fetch(t, 8080, "/extra.txt") == "extra\n"

    # a second backup; restoring the first run by its id brings the first data back
    write_page(t, "third-data")
    p.ok("backup", "web1", "--now")
    runs = [s["run"] for s in p.json("restore", "web1", "site", "--list")["snapshots"]]
    assert len(runs) == 2 and runs[0] == run1, runs
    p.ok("restore", "web1", "site", "--snapshot", run1)
    assert fetch(t, 8080) == "first-data\n"
    p.ok("restore", "web1", "site")  # the latest
    assert fetch(t, 8080) == "third-data\n"

    # errors are one line: an unknown service, an unknown snapshot
    r = p.run("restore", "web1", "nothing")
    assert r.returncode == 2 and r.stderr.startswith("error: web1: 'nothing' has no backed-up")
    r = p.run("restore", "web1", "site", "--snapshot", "19990101T000000Z")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip().startswith("error: web1: restore failed: no run or snapshot"), r.stderr
    assert t.ssh("systemctl is-active site.service").stdout.strip() == "active"

    # a backup that fails after the container was stopped: /fail is pinged with the reason,
    # the container is started again, the metric keeps the last success
    good = metric_time(t)
    t.write_file(
        "/usr/local/bin/restic",
        '#!/bin/sh\n[ "$1" = backup ] && { echo "Fatal: disk full (test)" >&2; exit 1; }\n'
        'exec /usr/bin/restic "$@"\n',
        0o755,
    )
    pings.clear()
    r = p.run("backup", "web1", "--now")
    t.ssh("rm /usr/local/bin/restic")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "disk full (test)" in r.stderr.strip().splitlines()[-1], r.stderr
    assert r.stderr.strip().startswith("error: web1: backup failed: "), r.stderr
    assert pings.paths() == ["/ping/web1/start", "/ping/web1/fail"]
    assert "disk full (test)" in pings.seen[-1][1]
    assert t.ssh("systemctl is-active site.service").stdout.strip() == "active"
    assert fetch(t, 8080) == "third-data\n"
    assert metric_time(t) == good

    # a wrong repository password: refused before anything is stopped, /fail again
    p.set("web1", "backup_password", "not-the-password")
    p.ok("switch", "web1")
    site_pid = main_pid(t, "site.service")
    pings.clear()
    r = p.run("backup", "web1", "--now")
    assert r.returncode == 1
    assert "cannot open the restic repository /srv/backup-repo" in r.stderr, r.stderr
    assert pings.paths() == ["/ping/web1/start", "/ping/web1/fail"]
    assert main_pid(t, "site.service") == site_pid

    # the password never reached the bundle, and the journal never saw it
    journal = t.ssh("journalctl -b --no-pager -o cat").stdout
    assert PASSWORD not in journal
    for f in p.bundles.rglob("*"):
        if f.is_file():
            assert PASSWORD.encode() not in f.read_bytes(), f


def test_backup_and_restore_to_s3(
    server_project: SecretsProject, target: Target, pings: Pings, s3: S3Server
) -> None:
    t, p = target, server_project
    s3.create_bucket(BUCKET)
    stack = STACK.format(ping=pings.url).replace(
        'repository = "/srv/backup-repo"\n',
        f'repository = "s3:{s3.endpoint}/{BUCKET}/web1"\n'
        's3_access_key_secret = "s3_key"\ns3_secret_key_secret = "s3_secret"\n'
        'method = "snapshot"\n',  # the test server has neither LVM nor btrfs: it stops instead
    )
    p.write("web1.toml", stack)
    p.set("web1", "backup_password", PASSWORD)
    p.set("web1", "s3_key", S3_KEY)
    p.set("web1", "s3_secret", S3_SECRET)
    p.ok("switch", "web1")
    write_page(t, "s3-data")
    pings.clear()
    out = p.ok("backup", "web1", "--now").stdout
    assert "site-data: neither LVM nor btrfs under /var/lib/containers/storage/volumes/" in out
    assert "stopping site instead" in out and "stopping site.service" in out, out
    assert pings.paths() == ["/ping/web1/start", "/ping/web1"]
    keys = s3.keys(BUCKET)
    assert "<Key>web1/config</Key>" in keys and "<Key>web1/snapshots/" in keys, keys[:500]

    write_page(t, "after-backup")
    wipe_volume(t)
    p.ok("restore", "web1", "site")
    assert fetch(t, 8080) == "s3-data\n"
    assert t.ssh("systemctl is-active other.service").stdout.strip() == "active"

    # move the service to another host (here web2: the same machine, its own state folder and
    # repository): last backup on web1, drop it there, deploy it on web2, restore --from web1
    write_page(t, "moved-data")
    t.ssh("systemctl stop site.service")
    p.ok("backup", "web1", "--now")
    assert t.ssh("systemctl is-active site.service", check=False).stdout.strip() == "inactive"
    site = stack[stack.index("[volumes.site-data]") : stack.index("[containers.other]")]
    p.write(
        "web1.toml", stack.replace(site, "").replace("[backup]\n", "[backup]\nenabled = false\n")
    )
    p.ok("switch", "web1")
    web2 = (
        stack.replace('name = "web1"', 'name = "web2"\nstate_dir = "/var/lib/bundle-web2"')
        .replace(f"/{BUCKET}/web1", f"/{BUCKET}/web2")
        .split("[containers.other]")[0]
    )
    p.write("web2.toml", web2)
    for name, value in [
        ("backup_password", PASSWORD),
        ("s3_key", S3_KEY),
        ("s3_secret", S3_SECRET),
    ]:
        p.set("web2", name, value)
    p.ok("switch", "web2")
    wipe_volume(t)  # web2 starts from nothing
    listing = p.json("restore", "web2", "site", "--from", "web1", "--list")
    assert listing["host"] == "web1" and len(listing["snapshots"]) == 2, listing
    p.ok("restore", "web2", "site", "--from", "web1")
    assert fetch(t, 8080) == "moved-data\n"
    assert t.ssh("readlink /var/lib/bundle-web2/current").stdout.startswith("generations/1-")
    r = p.run("restore", "web2", "site")  # web2's own repository has no snapshot yet
    assert r.returncode == 1 and "cannot open the restic repository" in r.stderr, r.stderr
