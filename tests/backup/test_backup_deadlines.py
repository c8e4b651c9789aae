"""A backup or restore may run far longer than any deadline, but a server that stops answering
while one runs is noticed at the next poll: one line naming the host and the step, and the run
goes on there to its end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.harness import Target
from tests.secrets.conftest import SecretsProject
from tests.server.test_deadlines import HUNG_PIDS, one_line, timed

from .conftest import PASSWORD, fetch

LONG = 12  # seconds restic takes: six times the look-up deadline
MARK = "/run/bundle-test-hang-polls"
ADVICE = "check that the host is up (ssh root@web1-test true) or raise [host] command_timeout"

# restic takes LONG seconds to back up or restore; with MARK's word in the file, it first
# makes the next look at the unit stop itself (SIGSTOP): a server that no longer answers
SLOW_RESTIC = f"""#!/bin/sh
case "$1" in backup|restore)
  [ -f {MARK} ] && [ "$(cat {MARK})" = "$1" ] && echo hang > {MARK}
  sleep {LONG};;
esac
exec /usr/bin/restic "$@"
"""
# a systemctl whose `show -p ActiveState` stops itself once MARK says hang
HANGING_SYSTEMCTL = f"""#!/bin/sh
case "$*" in *"show -p ActiveState"*)
  if [ "$(cat {MARK} 2>/dev/null)" = hang ]; then echo $$ >> {HUNG_PIDS}; kill -STOP $$; fi;;
esac
exec /usr/bin/systemctl "$@"
"""


@pytest.fixture(scope="module")
def project(server_project: SecretsProject, target: Target) -> SecretsProject:
    p = server_project
    stack = p.stacks / "web1.toml"
    text = stack.read_text().replace(
        'address = "web1-test"', 'address = "web1-test"\ncommand_timeout = 2'
    )
    stack.write_text(text)
    p.set("web1", "backup_password", PASSWORD)
    p.ok("switch", "web1")
    return p


@pytest.fixture
def slow(project: SecretsProject, target: Target) -> Iterator[SecretsProject]:
    target.write_file("/usr/local/bin/restic", SLOW_RESTIC, 0o755)
    target.write_file("/usr/local/bin/systemctl", HANGING_SYSTEMCTL, 0o755)
    yield project
    target.ssh(
        f"rm -f /usr/local/bin/restic /usr/local/bin/systemctl {MARK}; "
        f"for pid in $(cat {HUNG_PIDS} 2>/dev/null); do kill -9 $pid; done; rm -f {HUNG_PIDS}"
    )


def last_run(target: Target) -> dict[str, str]:
    return json.loads(target.read_file("/var/lib/bundle/backup/last.json"))


def test_a_backup_longer_than_the_deadline_is_followed_to_its_end(
    slow: SecretsProject, target: Target
) -> None:
    result, seconds = timed(lambda: slow.run("backup", "web1", "--now"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("web1: backup ok in "), result.stdout
    assert seconds >= LONG  # it waited for restic, far past the 2 s deadline of a look-up
    assert last_run(target)["result"] == "ok"


def test_a_server_that_hangs_during_a_backup_is_noticed_and_the_backup_goes_on(
    slow: SecretsProject, target: Target
) -> None:
    before = last_run(target)["run"]
    target.write_file(MARK, "backup")
    result, seconds = timed(lambda: slow.run("backup", "web1", "--now"))
    assert one_line(result) == (
        "error: web1: no answer from the server for 2 s while following the backup "
        f"(backup-follow); {ADVICE}; the backup goes on there without this command: "
        "journalctl -u backup.service on the server shows how it ends"
    )
    assert seconds < 120
    # the backup itself was not cut: it ends on the server, ok
    deadline = time.monotonic() + 120
    while last_run(target)["run"] == before and time.monotonic() < deadline:
        time.sleep(1)
    assert last_run(target)["run"] != before and last_run(target)["result"] == "ok"
    assert target.ssh("systemctl is-active site.service").stdout.strip() == "active"


def test_a_server_that_hangs_during_a_restore_is_noticed_and_the_restore_goes_on(
    slow: SecretsProject, target: Target
) -> None:
    target.ssh("podman exec site sh -c 'echo backed-up > /www/index.html'")
    assert slow.run("backup", "web1", "--now").returncode == 0
    target.ssh("podman exec site sh -c 'echo lost > /www/index.html'")
    target.write_file(MARK, "restore")
    result, seconds = timed(lambda: slow.run("restore", "web1", "site"))
    line = one_line(result)
    assert line.startswith(
        "error: web1: no answer from the server for 2 s while following the restore "
        f"(restore-follow); {ADVICE}; the restore goes on there without this command: "
        "journalctl -u bundle-restore-"
    ), line
    assert line.endswith(".service on the server shows how it ends"), line
    assert seconds < 120
    # the restore finishes on the server by itself: the page backed up is served again
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and page(target) != "backed-up\n":
        time.sleep(1)
    assert fetch(target, 8080) == "backed-up\n"


def page(target: Target) -> str | None:
    """The page, or None while the restore has the container stopped."""
    try:
        return fetch(target, 8080, tries=5)
    except AssertionError:
        return None
