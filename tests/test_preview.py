"""`bundle preview`: a built generation on a throwaway local server, pulled from the suite's
registry, health-checked, looked at, kept and stopped; refused in one line without root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from builder.bundle.paths import Paths
from builder.commands.preview import run_preview
from builder.testserver.webstack import web_stack, write_stack
from tests.harness import Registry

CHECK = 'checks = [{ tcp = "127.0.0.1:8081" }]\n'
# documentation addresses (RFC 5737): the preview must tell nobody, and could not reach them
NOTIFY = '\n[notify]\nwebhook = "http://192.0.2.1/hook"\n'
STACK = web_stack("web1", "web1.example.org", volume=False, other_lines=CHECK) + NOTIFY


def bundle(
    root: Path, *args: str, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "builder.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(root)},
        timeout=300,
        check=False,
    )


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_a_kept_preview_serves_the_generation_until_stopped(
    tmp_path: Path, registry: Registry
) -> None:
    root = tmp_path / "project"
    write_stack(root / "stacks", "web1", STACK)
    assert bundle(root, "build", "web1").returncode == 0
    paths = Paths(root / "stacks", root / "bundles")
    gone: list[str] = []
    assert run_preview(paths, "web1", None, False, gone.append, registry) is True
    assert gone[-1] == "removing the preview server ..."
    first = gone[1].split()[3]  # "  server up at 10.200.N.2 in 2.0 s"
    assert f"bundle-t{first.split('.')[2]}" not in namespaces()

    lines: list[str] = []
    assert run_preview(paths, "web1", None, True, lines.append, registry) is True
    text = "\n".join(lines)
    assert lines[0] == "web1: booting a throwaway server for generation 1 ..."
    assert "  generation 1 active; 1 image pulled" in lines
    assert "  health: every unit up and 1 check passed in " in text
    address = json.loads((root / "bundles/web1/preview.json").read_text())["address"]
    assert lines[lines.index("look at:") + 1 :][:2] == [
        f"  other: http://{address}:8081/",
        f"  web: http://{address}:8080/",
    ]
    assert f"  address: {address}, reachable from this machine only (the host is " in text
    assert "web1.example.org)" in text
    assert "  secrets: none in this generation" in lines
    assert "  DNS: names that point at the host do not point here; use the address above" in lines
    assert lines[-1] == "stop it with: bundle preview --stop web1"
    assert "  notifications: paused on the preview; [notify] targets are not told" in lines
    key = next(ln.split()[3] for ln in lines if ln.startswith("kept: ssh -i "))
    quiet = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    on_server = "test -e /var/lib/bundle/notify-paused && journalctl -t bundle-notify -o cat"
    looked = subprocess.run(
        ["ssh", "-i", key, *quiet, f"root@{address}", on_server],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert looked.returncode == 0 and looked.stdout.strip() in ("", "-- No entries --"), looked
    with urllib.request.urlopen(f"http://{address}:8080/", timeout=10) as answer:
        assert answer.read().decode() == "first from web1\n"
    n = address.split(".")[2]
    assert f"bundle-t{n}" in namespaces()

    again = bundle(root, "preview", "web1")
    assert again.returncode == 2 and again.stderr.strip() == (
        "error: web1: a preview is already running; stop it first (bundle preview --stop web1)"
    )
    stop = bundle(root, "preview", "--stop", "web1")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.strip() == f"web1: stopped the preview server at {address}"
    assert f"bundle-t{n}" not in namespaces()
    assert not (root / "bundles/web1/preview.json").exists()
    none = bundle(root, "preview", "--stop", "web1")
    assert none.returncode == 2 and "web1: no kept preview to stop" in none.stderr

    stack = root / "stacks/web1.toml"
    stack.write_text(
        stack.read_text().replace("[host]\n", '[host]\nrootless = true\nssh_user = "app"\n')
    )
    rootless = bundle(root, "preview", "web1")
    assert rootless.returncode == 2 and rootless.stderr.strip() == (
        "error: web1: a rootless host (docs/rootless.md); bundle preview boots hosts whose "
        "switcher runs as root only"
    )
    assert f"bundle-t{n}" not in namespaces()


def test_without_root_the_preview_says_what_it_needs() -> None:
    # a folder the unprivileged user can read (pytest's own are root's alone)
    root = Path(tempfile.mkdtemp(prefix="bundle-preview-test-")) / "project"
    try:
        write_stack(root / "stacks", "web1", STACK)
        subprocess.run(["chmod", "-R", "a+rX", str(root.parent)], check=True)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        result = bundle(root, "preview", "web1", user=nobody)
    finally:
        shutil.rmtree(root.parent)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: bundle preview needs root and systemd-nspawn for its throwaway server: this is "
        "not root (run it with sudo) (see docs/operations.md, A local preview)"
    ]
    assert result.stdout == ""
