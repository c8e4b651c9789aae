"""What systemd, podman and the server's folder names say is read in ASCII digits, matched whole:
a superscript digit passes str.isdigit and then crashes int(), and `$` lets a trailing newline
through re.match."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from activate.server_checks import parse_version, published_host_ports
from builder.deploy.remote import BOOTSTRAP


def test_published_ports_in_other_digits_are_not_host_ports() -> None:
    unit = "[Container]\nPublishPort=\u00b9\u00b2:80\nPublishPort=\u0668\u0668:80\nPublishPort=8080:80\n"
    assert published_host_ports(unit) == [8080]


def test_versions_are_read_in_ascii_digits_only() -> None:
    assert parse_version("podman version 5.4.2") == (5, 4, 2)
    assert parse_version("podman version \u0665.\u0664") == ()


def test_unit_numbers_in_other_digits_are_unknown(tmp_path: Path) -> None:
    from activate.systemd import _int

    assert _int("12") == 12
    assert _int("\u00b9\u00b2") is None  # isdigit() is True, int() would raise
    assert _int("\u0661") is None


def test_the_switcher_check_lists_only_whole_generation_names(tmp_path: Path) -> None:
    state = tmp_path / "state"
    switchers = state / "switchers"
    (state / "generations").mkdir(parents=True)
    switchers.mkdir()
    for name in ("3-0123456789ab", "4-0123456789ab\n", "\u00b9-0123456789ab"):
        (state / "generations" / name).mkdir()
    stray = switchers / ("a" * 64 + ".tmp99999999\n")  # not a temp folder of ours: left alone
    stray.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, "check", str(switchers / ("b" * 64)), str(state)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(done.stdout)
    assert seen["generations"] == ["3-0123456789ab"]
    assert seen["leftovers"] == []
    assert stray.is_dir()
