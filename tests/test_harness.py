"""The test server itself: a quadlet unit pulls from the test registry and serves HTTP."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.harness import Registry, Target

WEB_UNIT = """\
[Unit]
Description=test web server

[Container]
Image=registry.test:5000/bundle/web:1.0.0
Exec=busybox httpd -f -p 8080 -h /www
PublishPort=0.0.0.0:8080:8080

[Install]
WantedBy=multi-user.target
"""


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


def test_quadlet_container_from_registry_serves_http(target: Target, registry: Registry) -> None:
    target.write_file("/etc/containers/systemd/web.container", WEB_UNIT)
    target.ssh("/usr/libexec/podman/quadlet -dryrun >/dev/null")
    target.ssh("systemctl daemon-reload && systemctl start web.service")

    assert fetch(target.url(8080, "/index.html")) == "bundle/web:1.0.0\n"
    digest = target.ssh(
        "podman image inspect --format '{{.Digest}}' registry.test:5000/bundle/web:1.0.0"
    ).stdout.strip()
    assert digest == registry.pushed["bundle/web:1.0.0"].digest

    t0 = time.monotonic()
    target.ssh("systemctl stop web.service")
    assert time.monotonic() - t0 < 5  # the image's entrypoint exits on SIGTERM
    state = target.ssh("systemctl is-active web.service", check=False).stdout.strip()
    assert state == "inactive"


def test_reboot_keeps_disk_and_enabled_units(target: Target) -> None:
    target.write_file("/srv/marker", "kept\n")
    target.reboot()
    assert target.read_file("/srv/marker") == "kept\n"
    target.ssh(  # enabled by its [Install] section: started at boot, maybe still starting
        "for i in $(seq 100); do systemctl is-active -q web.service && exit 0; sleep 0.1; done;"
        " systemctl status web.service; exit 1"
    )
    assert fetch(target.url(8080)) == "bundle/web:1.0.0\n"


def test_quadlet_dryrun_rejects_unknown_key(quadlet_bin: Path, tmp_path: Path) -> None:
    def dryrun(unit: str) -> subprocess.CompletedProcess[str]:
        for old in tmp_path.glob("*.container"):
            old.unlink()
        (tmp_path / "web.container").write_text(unit)
        env = {**os.environ, "QUADLET_UNIT_DIRS": str(tmp_path)}
        return subprocess.run(
            [str(quadlet_bin), "-dryrun"], env=env, capture_output=True, text=True, check=False
        )

    good = dryrun(WEB_UNIT)
    assert good.returncode == 0, good.stderr
    assert "ExecStart=" in good.stdout

    bad = dryrun(WEB_UNIT.replace("PublishPort=", "PublishPorts="))
    assert bad.returncode != 0
    assert "unsupported key 'PublishPorts'" in bad.stderr
