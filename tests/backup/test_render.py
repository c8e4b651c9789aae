"""The [backup] table at build time: what goes into the bundle, what is refused, and the server
program's own logic (choosing snapshots, replacing a volume's files, kopia's command lines)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from activate.backup import config, outcome, restore, tools
from activate.backup.volumes import STAGE_NAME, replace_contents
from activate.errors import Failed
from tests.build.conftest import Project, make_project


@pytest.fixture
def empty_project(tmp_path: Path) -> Project:
    (tmp_path / "p/stacks/templates").mkdir(parents=True)
    return Project(tmp_path / "p")


@pytest.fixture
def shipped(tmp_path: Path) -> Project:
    return make_project(tmp_path / "shipped")


STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[backup]
tool = "restic"
repository = "s3:https://s3.fr-par.scw.cloud/my-backups/web1"
password_secret = "backup_password"
s3_access_key_secret = "s3_key"
s3_secret_key_secret = "s3_secret"
healthcheck_url_secret = "hc_url"
on_calendar = "*-*-* 03:00:00"
keep = { daily = 7, weekly = 4 }

[pods.app]
[volumes.app-data]
[volumes.app-db]
[volumes.lone-data]
[volumes.cache]

[containers.app]
image = "docker.io/library/nextcloud"
version = "29.0.1-apache"
pod = "app"
volumes = ["app-data:/var/www/html"]
stateful = true

[containers.app-cron]
image = "docker.io/library/nextcloud"
version = "29.0.1-apache"
pod = "app"
volumes = ["app-data:/var/www/html"]

[containers.app-db]
image = "docker.io/library/mariadb"
version = "11.4.4"
pod = "app"
volumes = ["app-db:/var/lib/mysql"]
stateful = true

[containers.lone]
image = "docker.io/library/postgres"
version = "16.6-alpine"
volumes = ["lone-data:/var/lib/postgresql/data"]
stateful = true

[containers.cache]
image = "docker.io/library/redis"
version = "7.4-alpine"
volumes = ["cache:/data"]
"""


def build(p: Project, stack: str = STACK) -> Path:
    p.write("web1.toml", stack)
    r = p.run("build", "web1")
    assert r.returncode == 0, r.stderr
    return sorted(d for d in (p.bundles / "web1").iterdir() if d.is_dir())[-1]


def test_the_bundle_has_the_program_its_plan_and_two_units(empty_project: Project) -> None:
    gen = build(empty_project)
    manifest = json.loads((gen / "manifest.json").read_text())
    plan = json.loads((gen / "scripts/backup.json").read_text())
    # a pod's volumes are one group: the application and its database are saved together
    assert plan["groups"] == [
        {
            "name": "app",
            "volumes": ["app-data", "app-db"],
            "units": ["app-cron.service", "app-db.service", "app.service"],
        },
        {"name": "lone", "volumes": ["lone-data"], "units": ["lone.service"]},
    ]
    assert plan["volumes"] == ["app-data", "app-db", "lone-data"]  # not cache: not stateful
    # the pod wins the bare name; NAME.container and NAME.pod are exact
    assert plan["services"]["app"]["volumes"] == ["app-data", "app-db"]
    assert plan["services"]["app.container"] == {
        "volumes": ["app-data"],
        "units": ["app-cron.service", "app.service"],
    }
    assert sorted(plan["services"]) == [
        "app", "app-db", "app-db.container", "app.container", "app.pod", "lone", "lone.container",
    ]  # fmt: skip
    assert plan["keep"] == {"daily": 7, "weekly": 4} and plan["tool"] == "restic"
    # secrets are placeholders completed on the server, in root-only files
    for key, name in [
        ("password", "backup_password"),
        ("s3_access_key", "s3_key"),
        ("s3_secret_key", "s3_secret"),
        ("healthcheck_url", "hc_url"),
    ]:
        path = plan["secrets"][key]
        rel = path.split("/rendered/", 1)[1].split("/", 1)[1]
        assert path.startswith("/var/lib/bundle/rendered/")
        assert (gen / rel).read_text() == f"@@bundle-secret:{name}@@"
        assert manifest["files"][rel]["mode"] == "0600"
        assert manifest["rendered"][rel]["secrets"] == [name]
        assert manifest["secrets"][name]["used_by"] == ["backup.service"]
    service = manifest["units"]["backup.service"]
    assert service["enable"] is False  # started by its timer, never by activation
    assert {"scripts/backup.py", "scripts/backup.json"} <= set(service["files"])
    assert manifest["units"]["backup.timer"]["enable"] is True
    assert manifest["units"]["backup.timer"]["requires"] == ["backup.service"]
    unit = (gen / "units/systemd/backup.service").read_text()
    assert "ExecStart=/usr/bin/python3 -B /var/lib/bundle/current/scripts/backup.py run\n" in unit
    assert "OnCalendar=*-*-* 03:00:00\n" in (gen / "units/systemd/backup.timer").read_text()
    assert manifest["files"]["scripts/backup.py"]["mode"] == "0755"
    compile((gen / "scripts/backup.py").read_bytes(), "backup.py", "exec")  # valid python3


def test_the_launcher_runs_its_own_generation_s_program_and_plan(
    empty_project: Project, tmp_path: Path
) -> None:
    # a copy of the generation, away from this repository: only what travels to a server
    gen = shutil.copytree(build(empty_project), tmp_path / "generations/1-abc", symlinks=True)
    launcher = gen / "scripts/backup.py"
    done = subprocess.run(
        [sys.executable, "-B", str(launcher), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "restore" in done.stdout, done.stderr
    plan = gen / "scripts/backup.json"
    plan.chmod(0o644)
    plan.write_text("[1]")  # the plan beside the launcher is the one it reads
    done = subprocess.run(
        [sys.executable, "-B", str(launcher), "list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1 and done.stderr == "", done.stderr
    assert done.stdout == (
        f"error: {plan}: not the JSON expected (a list at the top level); "
        "rebuild and push the bundle\n"
    )
    assert not list(gen.rglob("__pycache__"))  # a generation is never written to


def test_systemd_accepts_the_units(empty_project: Project) -> None:
    gen = build(empty_project)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
         str(gen / "units/systemd/backup.timer"), str(gen / "units/systemd/backup.service")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    problems = [
        ln for ln in done.stderr.splitlines() if "backup." in ln and "is not executable" not in ln
    ]
    assert not problems, done.stderr


def test_kopia_with_object_lock_builds_and_its_commands(empty_project: Project) -> None:
    stack = STACK.replace('tool = "restic"', 'tool = "kopia"\nobject_lock = "30d"').replace(
        'on_calendar = "*-*-* 03:00:00"', 'on_calendar = "*-*-* 03:00:00"\ns3_region = "fr-par"'
    )
    gen = build(empty_project, stack)
    cfg = json.loads((gen / "scripts/backup.json").read_text())
    tool = tools.Kopia(cfg)
    assert tool.storage_args() == [
        "s3",
        "--bucket=my-backups",
        "--endpoint=s3.fr-par.scw.cloud",
        "--prefix=web1/",
        "--region=fr-par",
    ]
    assert tool.identity() == ["--override-hostname=web1", "--override-username=root"]
    assert tools.keep_args(cfg["keep"], "kopia") == ["--keep-daily=7", "--keep-weekly=4"]
    assert tools.keep_args({"last": 3, "yearly": 2}, "restic") == [
        "--keep-last=3",
        "--keep-yearly=2",
    ]
    assert tools.keep_args({"last": 3, "yearly": 2}, "kopia") == [
        "--keep-latest=3",
        "--keep-annual=2",
    ]
    local = tools.Kopia({**cfg, "repository": "/srv/kopia"})
    assert local.storage_args() == ["filesystem", "--path=/srv/kopia"]
    plain = tools.parse_s3("s3:http://10.0.0.1:9000/b")
    assert plain == {"endpoint": "10.0.0.1:9000", "bucket": "b", "prefix": "", "tls": False}


def test_staging_turns_backup_off_and_the_shipped_stacks_build_without_secrets(
    shipped: Project,
) -> None:
    project = shipped
    r = project.run("build", "vps1", "vps1-staging", "vps2")
    assert r.returncode == 0, r.stderr
    units = {
        host: json.loads(
            (
                sorted(d for d in (project.bundles / host).iterdir() if d.is_dir())[-1]
                / "manifest.json"
            ).read_text()
        )["units"]
        for host in ("vps1", "vps1-staging", "vps2")
    }
    assert "backup.timer" in units["vps1"] and "backup.timer" in units["vps2"]
    assert "backup.timer" not in units["vps1-staging"]
    assert "backup.service" not in units["vps1-staging"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('tool = "restic"', 'tool = "borg"', "backup.tool: 'borg': use one of restic, kopia"),
        ('tool = "restic"', 'tool = "restic"\nmethod = "freeze"', "backup.method: 'freeze'"),
        (
            'tool = "restic"',
            'tool = "kopia"',
            None,  # kopia on S3 is fine
        ),
        (
            'repository = "s3:https://s3.fr-par.scw.cloud/my-backups/web1"',
            'repository = "sftp:me@host:/srv/x"\ntool = "kopia"',
            "",  # replaced below
        ),
        (
            's3_access_key_secret = "s3_key"\n',
            "",
            "an s3: repository needs s3_access_key_secret and s3_secret_key_secret",
        ),
        (
            'healthcheck_url_secret = "hc_url"',
            'healthcheck_url_secret = "hc_url"\nhealthcheck_url = "https://hc-ping.com/x"',
            "give healthcheck_url or healthcheck_url_secret, not both",
        ),
        (
            'healthcheck_url_secret = "hc_url"',
            'healthcheck_url = "hc-ping.com/x"',
            "backup.healthcheck_url: 'hc-ping.com/x' is not an http(s) URL",
        ),
        (
            "keep = { daily = 7, weekly = 4 }",
            'object_lock = "30d"',
            "object lock is kopia's, on an s3: repository",
        ),
        (
            'password_secret = "backup_password"',
            'password_secret = "Bad Name"',
            "invalid secret name",
        ),
        ("stateful = true", "stateful = false", None),  # two others remain stateful
        (
            'repository = "s3:https://s3.fr-par.scw.cloud/my-backups/web1"',
            'repository = "backups"',
            "backup.repository: 'backups': write s3:https://ENDPOINT/BUCKET[/PREFIX], an absolute path",
        ),
    ],
)
def test_backup_table_problems(
    empty_project: Project, old: str, new: str, expected: str | None
) -> None:
    if expected == "":
        expected = (
            "kopia repositories here are s3:https://ENDPOINT/BUCKET[/PREFIX] or an absolute path"
        )
        stack = STACK.replace(old, new).replace('tool = "restic"\n', "", 1)
        stack = stack.replace(
            's3_access_key_secret = "s3_key"\ns3_secret_key_secret = "s3_secret"\n', ""
        )
    else:
        stack = STACK.replace(old, new, 1)
    assert stack != STACK
    empty_project.write("web1.toml", stack)
    r = empty_project.run("check", "web1")
    if expected is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2, r.stdout
    assert expected in r.stderr, r.stderr
    assert r.stderr.startswith("error: stacks/web1.toml:"), r.stderr


def test_nothing_stateful_and_an_old_backup_script_are_refused(empty_project: Project) -> None:
    stack = STACK.replace("stateful = true", "stateful = false")
    stack += '\n[scripts.backup]\nrun = "echo old"\non_calendar = "daily"\n'
    empty_project.write("web1.toml", stack)
    r = empty_project.run("check", "web1")
    assert r.returncode == 2
    assert "nothing to back up: no enabled container with stateful = true" in r.stderr
    assert "[backup] makes backup.service and backup.timer: remove [scripts.backup]" in r.stderr


# --- the server program's own logic ----------------------------------------------------------


def snap(volume: str, run: str, ident: str) -> tools.Snapshot:
    return tools.Snapshot(ident, ident[:8], run, volume, run, "web1", f"/run/x/{volume}")


SNAPS = [
    snap("a", "20260101T030000Z", "aaaa1111"),
    snap("b", "20260101T030000Z", "bbbb1111"),
    snap("a", "20260102T030000Z", "aaaa2222"),
    snap("b", "20260102T030000Z", "bbbb2222"),
    snap("c", "20260102T030000Z", "cccc2222"),
]


def test_choosing_snapshots() -> None:
    latest = restore.choose(SNAPS, ["a", "b"], None)
    assert {v: s.id for v, s in latest.items()} == {"a": "aaaa2222", "b": "bbbb2222"}
    first = restore.choose(SNAPS, ["a", "b"], "20260101T030000Z")
    assert {v: s.id for v, s in first.items()} == {"a": "aaaa1111", "b": "bbbb1111"}
    one = restore.choose(SNAPS, ["a", "b"], "bbbb1")
    assert {v: s.id for v, s in one.items()} == {"b": "bbbb1111"}  # that volume only
    cases: list[tuple[list[str], str | None, str]] = [
        (["a", "d"], None, "no snapshot of d in the repository yet"),
        (["a", "c"], "20260101T030000Z", "run 20260101T030000Z has no snapshot of c"),
        (["a", "b"], "aaaa", "'aaaa' matches 2 snapshots: give more of the id"),
        (["a"], "cccc2222", "no run or snapshot 'cccc2222' among the snapshots of a"),
    ]
    for volumes, wanted, message in cases:
        with pytest.raises(Failed, match=message):
            restore.choose(SNAPS, volumes, wanted)


def test_replacing_a_volume_s_files(tmp_path: Path) -> None:
    volume = tmp_path / "_data"
    (volume / "old-dir").mkdir(parents=True)
    (volume / "old-dir/f").write_text("old")
    (volume / "old-file").write_text("old")
    stage = volume / STAGE_NAME
    root = stage / "run/bundle-backup/volumes/v"
    (root / "sub").mkdir(parents=True)
    (root / "sub/kept").write_text("restored")
    (root / "index.html").write_text("restored")
    root.chmod(0o750)
    replace_contents(volume, root, stage)
    assert sorted(p.name for p in volume.iterdir()) == [STAGE_NAME, "index.html", "sub"]
    assert (volume / "sub/kept").read_text() == "restored"
    assert volume.stat().st_mode & 0o777 == 0o750


def test_the_program_runs_only_as_root_with_its_help() -> None:
    done = subprocess.run(
        [sys.executable, "-B", "-m", "activate.backup", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "restore" in done.stdout


def test_a_missing_secret_file_is_one_clear_line(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"secrets": {"password": str(tmp_path / "nope")}}
    with pytest.raises(Failed, match=r"cannot read the secret file .*nope"):
        config.read_secret(cfg, "password")


def test_the_metric_file_is_the_monitoring_contract() -> None:
    # docs/monitoring.md, "The nightly backup's metric (the contract)"
    assert outcome.metric_text("vps1", 1735700400.7) == (
        "# HELP bundle_backup_last_success_timestamp_seconds Unix time the last successful "
        "nightly backup finished.\n"
        "# TYPE bundle_backup_last_success_timestamp_seconds gauge\n"
        'bundle_backup_last_success_timestamp_seconds{host="vps1"} 1735700400\n'
    )
