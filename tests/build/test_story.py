"""The build story a user runs: build, no-op build, change a version, diff, list, check."""

from __future__ import annotations

import json
import re

from tests.build.conftest import Project


def test_build_change_diff_story(project: Project) -> None:
    first = project.run("build", "vps1")
    assert first.returncode == 0, first.stderr
    m = re.search(r"vps1: built generation 1 \(([0-9a-f]{12})\)", first.stdout)
    assert m, first.stdout
    hash1 = m.group(1)
    gen1 = project.bundles / "vps1" / f"1-{hash1}"
    assert (gen1 / "manifest.json").is_file()
    assert (project.bundles / "vps1" / f"1-{hash1}.tar.zst").is_file()

    again = project.run("build", "vps1")
    assert again.returncode == 0
    assert f"vps1 is up to date at generation 1 ({hash1})" in again.stdout
    assert sorted(p.name for p in (project.bundles / "vps1").glob("[0-9]*")) == [
        f"1-{hash1}",
        f"1-{hash1}.tar.zst",
    ]

    project.edit("vps1.toml", 'version = "29.0.1-apache"', 'version = "29.0.2-apache"')
    second = project.run("build", "vps1")
    assert second.returncode == 0, second.stderr
    assert "vps1: built generation 2" in second.stdout

    diff = project.run("diff", "vps1")
    assert diff.returncode == 0, diff.stderr
    assert "nextcloud: 29.0.1-apache -> 29.0.2-apache" in diff.stdout
    assert "~ nextcloud.container" in diff.stdout
    assert "-Image=docker.io/library/nextcloud:29.0.1-apache" in diff.stdout
    assert "+Image=docker.io/library/nextcloud:29.0.2-apache" in diff.stdout
    # only the container whose unit changed is listed; the cron container keeps its version
    assert "nextcloud-cron" not in diff.stdout
    assert "\x1b[" not in diff.stdout

    stat = project.run("diff", "vps1", "1", "2", "--stat")
    assert stat.returncode == 0
    assert re.search(r"units/quadlet/nextcloud\.container\s+\| changed\s+\+1 -1", stat.stdout), (
        stat.stdout
    )
    assert "1 file changed, 1 insertion(+), 1 deletion(-)" in stat.stdout

    as_json = json.loads(project.run("diff", "vps1", "1", "2", "--json").stdout)
    assert as_json["images"] == [
        {
            "service": "nextcloud",
            "old": "docker.io/library/nextcloud:29.0.1-apache",
            "new": "docker.io/library/nextcloud:29.0.2-apache",
        }
    ]
    assert as_json["units"]["changed"] == ["nextcloud.container"]
    assert as_json["from"]["generation"] == 1 and as_json["to"]["generation"] == 2

    listing = project.run("generations", "vps1")
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["GEN", "HASH", "BUILT", "AT", "SIZE", "UNITS"]
    assert lines[1].split()[:2] == ["1", hash1]
    assert lines[2].endswith("(latest)") and lines[2].split()[0] == "2"
    rows = json.loads(project.run("generations", "vps1", "--json").stdout)
    assert [r["latest"] for r in rows] == [False, True]
    assert rows[0]["units"] == 30 and rows[0]["size"] > 0 and rows[0]["built_at"].endswith("Z")

    check = project.run("check", "vps1")
    assert check.returncode == 0 and "vps1: ok" in check.stdout


def test_every_shipped_stack_builds(project: Project) -> None:
    shipped = sorted(p.stem for p in project.stacks.glob("*.toml"))
    assert {"vps1", "vps1-rootless", "vps1-staging", "vps2"} <= set(shipped)
    for host in shipped:
        result = project.run("build", host, "--json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["created"] and info["units"] > 5


def test_staging_overrides_only_what_differs(project: Project) -> None:
    assert project.run("build", "vps1", "vps1-staging").returncode == 0
    prod = next((project.bundles / "vps1").glob("1-*[0-9a-f]"))
    staging = next((project.bundles / "vps1-staging").glob("1-*[0-9a-f]"))
    routes = (staging / "files/traefik/dynamic.yml").read_text()
    assert "Host(`cloud.staging.example.org`)" in routes
    assert "memory_limit = 512M" in (staging / "files/nextcloud/zz-bundle.ini").read_text()
    assert "memory_limit = 1G" in (prod / "files/nextcloud/zz-bundle.ini").read_text()
    # the staging variant disables the backup; everything it does not mention is vps1's
    assert not (staging / "units/systemd/backup.timer").exists()
    assert (prod / "units/systemd/backup.timer").exists()
    assert (staging / "units/quadlet/synapse.container").read_bytes().replace(
        b"vps1-staging", b"vps1"
    ) == (prod / "units/quadlet/synapse.container").read_bytes()


def test_shared_definition_with_host_override(project: Project) -> None:
    assert project.run("build", "vps1", "vps2").returncode == 0
    for host, address in (("vps1", "10.8.0.1"), ("vps2", "10.8.0.2")):
        unit = (
            next((project.bundles / host).glob("1-*[0-9a-f]"))
            / "units/quadlet/node-exporter.container"
        )
        text = unit.read_text()
        assert f"--web.listen-address={address}:9100" in text
        assert "Image=quay.io/prometheus/node-exporter:v1.8.2" in text


def test_unchanged_stack_after_unrelated_file_change_is_still_up_to_date(project: Project) -> None:
    assert project.run("build", "vps1").returncode == 0
    project.write("notes.txt", "a file the build does not read")
    again = project.run("build", "vps1")
    assert "up to date at generation 1" in again.stdout


def test_diff_needs_two_generations(project: Project) -> None:
    assert project.run("build", "vps1").returncode == 0
    result = project.run("diff", "vps1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: vps1: diff needs two generations")
    missing = project.run("diff", "vps1", "1", "7")
    assert missing.returncode == 2
    assert "generation 7 is not built" in missing.stderr
    assert "Traceback" not in missing.stderr
