"""The switcher on a real server: systemd as PID 1, podman 5.4 and its quadlet generator.

The switcher is copied to the server once (as the deployer bootstraps it) and every later call
runs from a generation folder or that copy, exactly as `cd DIR && python3 -m activate ...`.
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.harness import Target

from .switcherkit import REPO, Bundle, U, make_bundle, tar_stream

STATE = "/var/lib/bundle"
SWITCHER_DIR = "/opt/bundle-switcher"
IMAGE = "registry.test:5000/bundle/web:1.0.0"


def web_units(extra: dict[str, U] | None = None) -> dict[str, U]:
    return {
        "web.container": U(
            f"[Container]\nImage={IMAGE}\nExec=busybox httpd -f -p 8080 -h /www\n"
            "PublishPort=0.0.0.0:8080:8080\nVolume=web-data.volume:/data\n"
            f"Volume={STATE}/current/files/web/index.html:/www/index.html:ro\n"
            "[Install]\nWantedBy=multi-user.target\n",
            requires=("web-data.volume",),
            image=IMAGE,
            refs=("files/web/index.html",),
        ),
        "web-data.volume": U("[Volume]\n"),
        "backup.service": U(
            f"[Service]\nType=oneshot\nExecStart={STATE}/current/scripts/backup.sh\n",
            enable=False,
            refs=("scripts/backup.sh",),
        ),
        "backup.timer": U(
            "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
            requires=("backup.service",),
        ),
        **(extra or {}),
    }


def stack(n: int, index: bytes, extra: dict[str, U] | None = None) -> Bundle:
    files: dict[str, bytes | tuple[bytes, int]] = {
        "files/web/index.html": index,
        "scripts/backup.sh": (b"#!/bin/sh\necho ok\n", 0o755),
    }
    return make_bundle(n, STATE, web_units(extra), files, parent=n - 1 or None)


def install_switcher(target: Target) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted((REPO / "activate").glob("*.py")):
            tar.add(path, arcname=f"activate/{path.name}")
    target.ssh(f"mkdir -p {SWITCHER_DIR} && tar -xzf - -C {SWITCHER_DIR}", input=raw.getvalue())


def switcher(
    target: Target, command: str, *args: str, stdin: bytes | None = None, cwd: str = SWITCHER_DIR
) -> tuple[int, Any, str]:
    cmd = f"cd {shlex.quote(cwd)} && python3 -m activate {command} --state {STATE} --root / "
    r = target.ssh(cmd + " ".join(map(shlex.quote, args)), check=False, input=stdin)
    data = json.loads(r.stdout) if r.stdout.strip() else None
    return r.returncode, data, r.stderr


def push(target: Target, bundle: Bundle) -> None:
    rc, have, err = switcher(target, "have", stdin=json.dumps(sorted(bundle.objects())).encode())
    assert rc == 0, err
    rc, got, err = switcher(target, "receive", stdin=tar_stream(bundle, have["missing"]))
    assert rc == 0, err
    assert got["generation"] == bundle.generation


def fetch(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def unit_state(target: Target, unit: str) -> str:
    return target.ssh(f"systemctl is-active {unit}", check=False).stdout.strip()


def test_push_activate_change_and_roll_back_on_a_real_server(
    target_factory: Callable[[], Target],
) -> None:
    server = target_factory()
    install_switcher(server)
    push(server, stack(1, b"hello\n"))

    rc, report, err = switcher(server, "activate", "--generation", "1")

    assert rc == 0, err
    assert report["services"] == "managed" and report["pulled"] == [IMAGE]
    assert fetch(server.url(8080, "/index.html")) == "hello\n"
    assert unit_state(server, "backup.timer") == "active"
    assert server.ssh("systemctl is-enabled backup.timer").stdout.strip() == "enabled"
    assert unit_state(server, "backup.service") == "inactive"  # only its timer starts it
    rc, status, err = switcher(server, "status")
    assert status["units"]["web.container"]["active"] == "active", err
    assert isinstance(status["units"]["web.container"]["main_pid"], int)

    # Change one config file: only the container that mounts it restarts.
    push(server, stack(2, b"v2\n"))
    volume_since = server.ssh(
        "systemctl show -p ActiveEnterTimestampMonotonic --value web-data-volume.service"
    ).stdout
    rc, report, err = switcher(server, "activate", "--generation", "2")

    assert rc == 0, err
    assert report["plan"]["restart"] == ["web.container"]
    assert fetch(server.url(8080, "/index.html")) == "v2\n"
    assert (
        server.ssh(
            "systemctl show -p ActiveEnterTimestampMonotonic --value web-data-volume.service"
        ).stdout
        == volume_since
    )

    # Roll back with generation 1's own switcher, from inside its folder.
    rc, report, err = switcher(server, "rollback", cwd=f"{STATE}/current")

    assert rc == 0, err
    assert (report["from"], report["to"]) == (2, 1)
    assert fetch(server.url(8080, "/index.html")) == "hello\n"

    # Enabled units come back by themselves after a reboot.
    server.reboot()
    server.ssh(
        "for i in $(seq 100); do systemctl is-active -q web.service && exit 0; sleep 0.1; done; exit 1"
    )
    assert fetch(server.url(8080, "/index.html")) == "hello\n"
    assert unit_state(server, "backup.timer") == "active"


def test_failures_on_a_real_server_roll_back_or_refuse(
    target_factory: Callable[[], Target],
) -> None:
    server = target_factory()
    install_switcher(server)
    push(server, stack(1, b"hello\n"))
    assert switcher(server, "activate", "--generation", "1")[0] == 0

    # A unit that fails to start, ordered after web: web restarts first, then everything goes back.
    failing = U(
        "[Unit]\nAfter=web.service\n[Service]\nType=oneshot\nExecStart=/bin/false\n"
        "[Install]\nWantedBy=multi-user.target\n",
        requires=("web.container",),
    )
    push(server, stack(2, b"v2\n", {"fails.service": failing}))
    rc, report, err = switcher(server, "activate", "--generation", "2")

    assert rc == 1, err
    assert err.startswith("activate: rolled back to generation 1"), err
    assert "fails.service" in err
    assert report["result"] == "rolled back"
    assert fetch(server.url(8080, "/index.html")) == "hello\n"
    assert server.ssh("readlink /var/lib/bundle/current").stdout.startswith("generations/1-")
    assert server.ssh("test -e /etc/systemd/system/fails.service", check=False).returncode == 1

    # A unit quadlet refuses: nothing is touched.
    bogus = U(f"[Container]\nImage={IMAGE}\nBogus=1\n", image=IMAGE)
    push(server, stack(3, b"v3\n", {"bogus.container": bogus}))
    rc, _report, err = switcher(server, "activate", "--generation", "3")

    assert rc == 1
    assert "quadlet generator refuses" in err and "Bogus" in err, err
    assert "rolled back" not in err
    assert fetch(server.url(8080, "/index.html")) == "hello\n"

    rc, history, err = switcher(server, "status")
    assert history["last"]["result"] == "rolled back", err
