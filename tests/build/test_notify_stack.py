"""[notify] in a stack: what the bundle holds (no secret value, the completed file's path) and
what is refused, one line each, before anything is built."""

from __future__ import annotations

import json
from pathlib import Path

from tests.build.conftest import Project

STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"

[notify]
{notify}
"""


def test_the_bundle_names_secret_urls_by_their_completed_file(empty_project: Project) -> None:
    p = empty_project
    p.write(
        "web1.toml",
        STACK.format(
            notify='webhook = "https://hooks.example.org/x"\n'
            'healthchecks_secret = "hc_url"\nevents = ["rolled back"]'
        ),
    )
    result = p.run("build", "web1", "--json")
    assert result.returncode == 0, result.stderr
    gen = next(d for d in (p.root / "bundles/web1").glob("1-*") if d.is_dir())  # not the archive
    config = json.loads((gen / "notify/notify.json").read_text())
    assert config["host"] == "web1" and config["events"] == ["rolled back"]
    hook, ping = config["targets"]
    assert hook == {"kind": "webhook", "url": "https://hooks.example.org/x"}
    assert ping["kind"] == "healthchecks" and "url" not in ping
    assert ping["url_file"].startswith("/var/lib/bundle/rendered/")
    assert ping["url_file"].endswith("/notify/secret/healthchecks-url")
    assert (gen / "notify/secret/healthchecks-url").read_text() == "@@bundle-secret:hc_url@@"


def test_bad_notify_tables_are_one_line_each(empty_project: Project, tmp_path: Path) -> None:
    p = empty_project
    for notify, message in (
        (
            'webhook = "https://a.example/x"\nwebhook_secret = "w"',
            "notify.webhook: give webhook or webhook_secret, not both",
        ),
        (
            'ntfy = "ftp://ntfy.example/topic"',
            "notify.ntfy: 'ftp://ntfy.example/topic': write an http",
        ),
        ('ntfy_token_secret = "tok"\nwebhook = "https://a.example/x"', "a token goes with ntfy"),
        ('healthchecks_secret = "Bad Name"', "notify.healthchecks_secret: invalid secret name"),
        ('webhook = "https://a.example/x"\nevents = ["deployed"]', "'deployed': use some of"),
        ('events = ["switched"]', "name at least one of webhook, ntfy, healthchecks"),
        ('slack = "https://a.example/x"', "slack"),
    ):
        p.write("web1.toml", STACK.format(notify=notify))
        result = p.run("build", "web1")
        assert result.returncode == 2, (notify, result.stdout, result.stderr)
        assert message in result.stderr, (notify, result.stderr)
        assert "Traceback" not in result.stderr
        assert not (p.root / "bundles/web1").exists() or not list(
            (p.root / "bundles/web1").glob("1-*")
        )
