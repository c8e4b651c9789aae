"""`bundle demo`: try bundle without a VPS.

Boots a throwaway server on this machine (systemd as PID 1, sshd, podman: the same one the
tests use), then runs the real `bundle` commands against it over SSH, narrating each step:
build, switch, change one service, diff, switch again, roll back. Tears it all down at the end,
or with `--keep` leaves the server running until `bundle demo --stop`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from builder.base.errors import BundleError, InputError
from builder.testserver import Registry, Target, host_problems, keep_noted, stop_noted
from builder.testserver.target import target_base
from builder.testserver.webstack import DEMO_PAGE, web_stack, write_stack

STACK = web_stack(
    "demo",
    "demo-server",
    message="Hello from generation one",
    volume=False,
    header=(
        "# The demo host: two small web servers from a registry running next to the demo server.\n"
        "# demo-server is an alias in this demo's own ~/.ssh/config.\n"
    ),
)

Say = Callable[[str], None]


class Demo:
    def __init__(self, say: Say) -> None:
        self.say = say
        self.work = Path(tempfile.mkdtemp(prefix="bundle-demo-"))
        self.project = self.work / "project"
        self.home = self.work / "home"

    def bundle(self, *args: str) -> str:
        self.say(f"$ bundle {shlex.join(args)}")
        result = subprocess.run(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
            check=False,
        )
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            self.say(f"  {line}")
        if result.returncode != 0:
            raise BundleError(
                f"demo: `bundle {shlex.join(args)}` failed (exit {result.returncode}); see above"
            )
        return result.stdout

    def fetch(self, url: str) -> str:
        for _ in range(50):
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    body: bytes = r.read()
                    return body.decode().strip()
            except OSError:
                time.sleep(0.1)
        raise BundleError(f"demo: {url} did not answer")

    def set_message(self, old: str, new: str) -> None:
        stack = self.project / "stacks/demo.toml"
        stack.write_text(stack.read_text().replace(old, new))


def kept_record() -> Path:
    """Where `--keep` notes the server it left running, for `--stop`."""
    return target_base() / "demo.json"


def run_demo(say: Say = print, keep: bool = False) -> None:
    problems = host_problems()
    if problems:
        raise BundleError("bundle demo cannot boot its server here: " + "; ".join(problems))
    if keep and kept_record().exists():
        raise InputError("a kept demo server is still running; stop it first (bundle demo --stop)")
    demo = Demo(say)
    say("bundle demo: a throwaway server on this machine, real systemd, sshd and podman.")
    say("")
    say("1. Booting the server and a small image registry next to it ...")
    registry = Registry.start()
    target: Target | None = None
    try:
        for tag in ("1.0.0", "1.1.0"):
            registry.push_busybox("bundle/web", tag)
        target = Target(registry=registry).up()
        say(
            f"   server up at {target.host} (ssh root@{target.host}) in {target.boot_seconds:.1f} s"
        )
        _write_project(demo, target)
        say("")
        say("2. Build the stack into generation 1 and switch the server to it.")
        demo.bundle("build", "demo")
        demo.bundle("switch", "demo")
        say(f"   the server answers: {demo.fetch(target.url(8080))!r}")
        say("")
        say("3. Change one service (its page) and see what the new generation changes.")
        demo.set_message("generation one", "generation two")
        demo.bundle("build", "demo")
        demo.bundle("diff", "demo")
        say("")
        say("4. Switch: only the changed container restarts; the other keeps running.")
        demo.bundle("switch", "demo")
        say(f"   the server answers: {demo.fetch(target.url(8080))!r}")
        demo.bundle("status", "demo")
        say("")
        say("5. Roll back: the previous generation, activated by its own switcher.")
        demo.bundle("rollback", "demo")
        say(f"   the server answers: {demo.fetch(target.url(8080))!r}")
        demo.bundle("log", "demo")
        say("")
        say(
            "Done. Next: `bundle init` for your own project, docs/getting-started.md for a real VPS."
        )
    finally:
        if target is not None and not keep:
            say("Tearing the demo server down ...")
            target.down()
        registry.stop()
        if keep and target is not None:
            keep_noted(target, kept_record())  # else the server goes with this process
            say(f"kept: server {target.host}, project {demo.project} (HOME={demo.home})")
            say("stop it with: bundle demo --stop")


def stop_demo(say: Say = print) -> None:
    if os.geteuid() != 0:
        raise InputError("bundle demo --stop needs root, as the demo did (run it with sudo)")
    address = stop_noted(kept_record())
    if address is None:
        raise InputError("no kept demo server to stop (bundle demo --keep)")
    say(f"stopped the demo server at {address}")


def _write_project(demo: Demo, target: object) -> None:
    assert isinstance(target, Target)
    write_stack(demo.project / "stacks", "demo", STACK, page=DEMO_PAGE)
    ssh = demo.home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = ssh / "id_demo"
    shutil.copy(target.key_path, key)
    key.chmod(0o600)
    (ssh / "config").write_text(
        f"Host demo-server\n  HostName {target.host}\n  Port {target.port}\n  User root\n  IdentityFile {key}\n"
    )
    shutil.copy(target.known_hosts_path, ssh / "known_hosts")


def cmd_demo(args: argparse.Namespace) -> int:
    if args.stop:
        stop_demo()
        return 0
    run_demo(lambda line: print(line, flush=True), keep=args.keep)
    return 0
