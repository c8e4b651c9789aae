"""The crash-test lab: one real server, one project, faults injected by name, the truth checked.

A fault point is a row of POINTS in test_faults.py; its test (1) writes the next version of
the stack, (2) deploys it while something goes wrong, (3) asks `bundle status --json` and
checks it against the server itself, (4) deploys again and checks that this completes, (5)
checks every object in the state folder. `Lab.record` keeps what happened for the table in
docs/reliability.md (tests/faults/render.py).

Ways to hurt a deploy:

* the switcher kills or stops itself at a named point: `Lab.fault("switch-flipped")` writes
  /run/bundle-test-fault on the server (activate/faults.py); `:stop` makes it wait stopped
  (SIGSTOP) so the test can act at that exact moment (cut the power, kill it from outside,
  kill the deployer, drop the connection, fill the disk), then `Lab.resume()`.
* the network: `Lab.proxy(MODE, N)` routes the deployer's SSH through tests/faults/proxy.py.
* the deployer: `Lab.start()` runs `bundle` as a process the test can SIGKILL.
* the disk: `Lab.small_disk()` puts a small tmpfs over a folder of the state tree.
* the power: `Target.power_cut()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs

from builder.stack import model
from builder.testserver.webstack import web_stack
from tests.faults.proxy import Proxy
from tests.harness import Target
from tests.server.conftest import DeployProject

STATE = "/var/lib/bundle"
BOOT_UNIT = "bundle-recover.service"
VARIANTS = {"other": 8081, "extra": 8082}  # a switch swaps one for the other
SERVICES = ("web.service", "other.service", "extra.service", "web-data-volume.service")
BLOB = "web/blob.bin"

# The switch waits neither for a settle window nor long for a confirmation, where the
# builder knows these keys (the health gate and the dead-man, docs/reliability.md).
_HOST_KEYS = {f.name for f in attrs.fields(model.Host)}
SAFETY = "".join(
    f"{key} = {value}\n"
    for key, value in (("health_settle", 0), ("health_timeout", 20), ("confirm_timeout", 5))
    if key in _HOST_KEYS
)


# Server-side view of everything a generation is made of: one SSH round trip.
OBSERVE = r"""
import hashlib, json, os, subprocess
S = "/var/lib/bundle"
def sha(path):
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
out = {"current": os.readlink(S + "/current") if os.path.islink(S + "/current") else None}
out["pending"] = os.path.exists(S + "/pending.json")
q = "/etc/containers/systemd"
names = sorted(os.listdir(q)) if os.path.isdir(q) else []
out["quadlet"] = {n: sha(os.path.join(q, n)) for n in names if os.path.isfile(os.path.join(q, n))}
shown = subprocess.run(["systemctl", "show", "-p", "Id,ActiveState", *SERVICES],
                       capture_output=True, text=True).stdout
out["active"] = {}
for block in shown.strip().split("\n\n"):
    kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    out["active"][kv.get("Id")] = kv.get("ActiveState")
bad, n = [], 0
for d in sorted(os.listdir(S + "/objects")) if os.path.isdir(S + "/objects") else []:
    for name in sorted(os.listdir(os.path.join(S, "objects", d))):
        n += 1
        if sha(os.path.join(S, "objects", d, name)) != name.split(".")[0]:
            bad.append(name)
out["objects"] = n
out["bad_objects"] = bad
gens = S + "/generations"
out["generations"] = sorted(os.listdir(gens)) if os.path.isdir(gens) else []
for g in out["generations"]:  # every registered generation is whole
    m = json.load(open(os.path.join(gens, g, "manifest.json")))
    for path, entry in m["files"].items():
        if sha(os.path.join(gens, g, path)) != entry["sha256"]:
            bad.append(g + "/" + path)
print(json.dumps(out))
""".replace("*SERVICES", "*" + repr(list(SERVICES)))


@dataclass
class Outcome:
    """One row of the table in docs/reliability.md."""

    point: str
    fault: str
    deployer: str = ""
    after: str = ""
    repair: str = ""
    next: str = ""
    objects: str = ""
    count: int = 0  # objects on the server after the next switch
    sent: int | None = None  # files the next switch pushed
    seconds: dict[str, float] = field(default_factory=dict)  # how long each phase took

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[phase] = round(time.monotonic() - t0, 2)


@dataclass
class Lab:
    p: DeployProject
    results: list[Outcome] = field(default_factory=list)
    version: int = 0
    variant: str = "other"
    running: int = 0  # the generation the last point left running
    host: str = ""  # more [host] lines of the stack (each ending in a newline)
    state: str = STATE  # the switcher's state folder on the server

    @property
    def target(self) -> Target:
        return self.p.target

    # ---- the stack ----------------------------------------------------------------------

    def next_stack(self, tag: str, *, big: bool = False, broken: bool = False) -> str:
        """The next version of the stack: a new page, the other variant container, and with
        `big` a 1 MiB random file (a push that takes a while), with `broken` a container
        that cannot start. Returns the page the new generation serves."""
        self.version += 1
        self.variant = "extra" if self.variant == "other" else "other"
        message = f"{self.version}: {tag}"
        blob = self.p.stacks / "templates" / BLOB
        if big:
            blob.write_bytes(os.urandom(1 << 20))
        text = web_stack(
            message=message,
            host=self.host + SAFETY,
            more_configs=f', {{ source = "{BLOB}", mount = "/www/blob.bin" }}' if big else "",
            other=self.variant,
            other_port=VARIANTS[self.variant],
            other_lines='volumes = ["/nonexistent/bundle-fault:/x"]\n' if broken else "",
        )
        (self.p.stacks / "web1.toml").write_text(text)
        return message

    def build(self) -> int:
        return int(self.p.json("build", "web1")["generation"])

    def local(self, number: int) -> Path:
        return next((self.p.bundles / "web1").glob(f"{number}-*[0-9a-f]"))

    def latest(self) -> int:
        return max(
            int(g.name.split("-")[0]) for g in (self.p.bundles / "web1").glob("[0-9]*-*[0-9a-f]")
        )

    # ---- running the deployer --------------------------------------------------------------

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.p.run(*args, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(self.p.home)}
        return subprocess.Popen(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=self.p.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def saw(result: subprocess.CompletedProcess[str] | subprocess.Popen[str]) -> str:
        """What the deployer said: exit code and its one line."""
        if isinstance(result, subprocess.Popen):
            _out, err = result.communicate(timeout=120)
            rc = result.returncode
        else:
            err, rc = result.stderr, result.returncode
        if rc == -signal.SIGKILL:
            return "killed (SIGKILL)"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert "Traceback" not in err, err
        assert rc == 0 or len(lines) == 1, err
        return f"exit {rc}" + (f": {lines[-1].removeprefix('error: ')}" if lines else "")

    # ---- faults -----------------------------------------------------------------------------

    def fault(self, spec: str) -> None:
        self.target.write_file("/run/bundle-test-fault", spec + "\n")

    def no_fault(self) -> None:
        self.target.ssh("rm -f /run/bundle-test-fault")

    def stopped_switcher(self, timeout: float = 60) -> int:
        """The pid of the switcher that stopped itself at its fault point (it holds the lock)."""
        script = (
            f'pid=$(python3 -c \'import json; print(json.load(open("{self.state}/lock"))["pid"])\' '
            "2>/dev/null) && [ \"$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)\" = T ] && echo $pid"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.target.ssh(script, check=False).stdout.strip()
            if out.isdigit():
                return int(out)
            time.sleep(0.1)
        raise AssertionError("the switcher did not stop at its fault point")

    def power_cut_at(self, point: str) -> str:
        """Cut the power while the switcher waits stopped at `point`, boot again, and wait until
        the boot settled; returns what the deployer saw."""
        self.fault(f"{point}:stop")
        client = self.start("switch", "web1")
        self.stopped_switcher()
        self.target.power_cut()
        # the deployer waits on a connection whose server is gone; stop it like a person would
        client.send_signal(signal.SIGINT)
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
        client.communicate()
        self.booted()
        return "cut off with the server (stopped by the test)"

    def booted(self) -> str:
        """Wait until every unit of the boot started (or failed); systemd's verdict."""
        return self.target.ssh("systemctl is-system-running --wait", check=False).stdout.strip()

    def boot_repair(self, new: int) -> str | None:
        """How bundle-recover.service repaired the switch to `new` at boot, from history."""
        for entry in reversed(self.history()):
            if entry.get("to") == new and BOOT_UNIT in str(entry.get("message")):
                step = re.search(r"killed after step (\w+)", str(entry["message"]))
                verb = "finished" if entry.get("result") == "ok" else "undone"
                where = f" (journal at step `{step.group(1)}`)" if step else ""
                return f"{verb} at boot by `{BOOT_UNIT}`{where}"
        return None

    def history(self) -> list[dict[str, Any]]:
        text = self.target.ssh(f"cat {self.state}/history.jsonl", check=False).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def resume(self, pid: int) -> None:
        self.target.ssh(f"kill -CONT {pid}")

    def wait_idle(self, timeout: float = 90) -> None:
        """Until no switch runs on the server (the lock is free)."""
        script = f"flock -n {STATE}/lock true"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.target.ssh(script, check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError("a switch still runs on the server")

    @contextlib.contextmanager
    def proxy(self, mode: str, n: int = 0) -> Iterator[Proxy]:
        """The deployer's SSH goes through a faulty proxy (tests/faults/proxy.py) for the block."""
        config = self.p.home / ".ssh/config"
        saved = config.read_text()
        with Proxy(self.target.host, self.target.port, mode, n) as proxy:
            config.write_text(
                saved.replace(f"HostName {self.target.host}", "HostName 127.0.0.1").replace(
                    f"Port {self.target.port}", f"Port {proxy.port}"
                )
                + f"  HostKeyAlias {self.target.host}\n"
            )
            try:
                yield proxy
            finally:
                config.write_text(saved)

    @contextlib.contextmanager
    def small_disk(self, folder: str, free_kib: int) -> Iterator[None]:
        """A tmpfs over STATE/folder ('' for the whole state tree) holding a copy of what is
        there, with about `free_kib` KiB left; put back (with what was written) afterwards."""
        path = f"{STATE}/{folder}".rstrip("/")
        keep = f"/run/bundle-disk-{os.getpid()}"
        self.target.ssh(
            f"set -e; mkdir -p {keep}; cp -a {path}/. {keep}/; "
            f"used=$(du -sk {keep} | cut -f1); "
            f"mount -t tmpfs -o size=$((used + {free_kib} + 64))k tmpfs {path}; "
            f"cp -a {keep}/. {path}/; rm -rf {keep}"
        )
        try:
            yield
        finally:
            self.target.ssh(
                f"set -e; rm -f {path}/filler; mkdir -p {keep}; cp -a {path}/. {keep}/; "
                f"umount {path}; find {path} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +; "
                f"cp -a {keep}/. {path}/; rm -rf {keep}"
            )

    def fill(self, folder: str = "") -> None:
        path = f"{STATE}/{folder}".rstrip("/")
        self.target.ssh(f"dd if=/dev/zero of={path}/filler bs=4k 2>/dev/null; sync", check=False)

    # ---- the truth ------------------------------------------------------------------------

    def observe(self) -> dict[str, Any]:
        out = self.target.ssh("python3 -", input=OBSERVE).stdout
        return json.loads(out)

    def http(self, port: int) -> str | None:
        try:
            with urllib.request.urlopen(self.target.url(port), timeout=3) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def page(self, number: int) -> str:
        return (self.local(number) / "files/web/index.html").read_text()

    def check(self, status: dict[str, Any] | None, allowed: tuple[int, ...]) -> int:
        """`bundle status --json` (when given) tells the truth, and the server runs exactly one
        of `allowed` (generation numbers) with that generation's units and nothing else."""
        repaired = (status or {}).get("recovered") or {}
        assert repaired.get("result") != "failed", f"{repaired}\n{self.journal()}"
        seen = self.observe()
        link = seen["current"]
        number = int(link.split("/")[1].split("-")[0]) if link else None
        assert number in allowed, f"generation {number} runs, expected one of {allowed}"
        assert number is not None
        assert link == f"generations/{self.local(number).name}"
        assert not seen["pending"], "pending.json is still there"
        if status is not None:
            assert status["current"] == number, (status["current"], link)
            for key in ("interrupted", "switching"):
                assert status.get(key) is None, (key, status.get(key))
            assert status["drift"] == [], status["drift"]
        manifest = json.loads((self.local(number) / "manifest.json").read_text())
        quadlet = {
            key: manifest["files"][u["path"]]["sha256"]
            for key, u in manifest["units"].items()
            if u["path"].startswith("units/quadlet/")
        }
        assert seen["quadlet"] == quadlet, "unit files in /etc/containers/systemd"
        wanted = {u["service"] for u in manifest["units"].values() if u["enable"]}
        for service in SERVICES:
            state = seen["active"].get(service)
            assert (state == "active") == (service in wanted), (service, state)
        for key, unit in (status or {}).get("units", {}).items():
            assert unit["active"] == seen["active"].get(unit["service"]), key
        assert self.p.fetch(8080) == self.page(number)
        for name, port in VARIANTS.items():
            if f"{name}.service" in wanted:
                self.p.fetch(port)  # answers (a container just started may need a moment)
            else:
                assert self.http(port) is None, f"{name} still answers on {port}"
        assert seen["bad_objects"] == [], seen["bad_objects"]
        return number

    def journal(self) -> str:
        """The containers' recent journal, for a failure message."""
        return self.target.ssh(
            "journalctl -b -n 60 --no-pager -u web.service -u other.service -u extra.service",
            check=False,
        ).stdout

    def status(self) -> dict[str, Any]:
        return self.p.json("status", "web1")

    def active(self) -> int:
        return int(self.status()["current"])

    # ---- recording --------------------------------------------------------------------------

    def settle(self, out: Outcome, old: int, new: int, allowed: tuple[int, ...]) -> None:
        """After the fault: status, the truth, the next deploy, the objects; fills `out`."""
        self.no_fault()
        with out.timed("status"):
            status = self.status()
        with out.timed("check"):
            running = self.check(status, allowed)
        which = "old" if running == old else "new"
        out.after = f"{which} generation {running} runs, as `bundle status` says"
        repaired = status.get("recovered")
        if repaired:
            step = repaired.get("interrupted", {}).get("step")
            out.repair = f"{repaired['result']} by `bundle status` (journal at step `{step}`)"
        else:
            out.repair = self.boot_repair(new) or "nothing to repair"
        with out.timed("next switch"):
            done = self.p.run("switch", "web1", "--json")
        if done.returncode != 0:
            raise AssertionError(f"the next switch failed: {done.stderr}\n{self.journal()}")
        switched = json.loads(done.stdout)
        assert switched["result"] == "ok", switched
        with out.timed("check next"):
            final = self.check(None, (self.latest(),))
        self.running = final
        # how many files the next push sends, and how many objects the server holds, depend on
        # how far the hurt push got: kept in the results file, never in the table
        out.sent = switched.get("push", {}).get("objects_sent")
        out.next = f"`bundle switch` ok: generation {final} runs"
        seen = self.observe()
        assert seen["bad_objects"] == [], seen["bad_objects"]
        out.count = seen["objects"]
        out.objects = "every object intact"
        self.results.append(out)
