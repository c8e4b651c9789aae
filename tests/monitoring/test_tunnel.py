"""WireGuard between vps1 and vps2, from the shipped stacks to packets through the tunnel.

The bundles are built with real keys as secrets and switched into folders standing in for the
two servers, which completes each wg0.conf with its private key. Both configurations are then
brought up with the command their unit runs, in two network namespaces joined by a veth pair
(wireguard-go when the kernel has no WireGuard), and vps2's generated prometheus.yml scrapes
vps1's Synapse endpoint over the tunnel with the real Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.build.conftest import REPO
from tests.secrets.conftest import SecretsProject

from .conftest import tool


def keypair() -> tuple[str, str]:
    private = subprocess.run(
        [tool("wg"), "genkey"], capture_output=True, text=True, check=True
    ).stdout.strip()
    public = subprocess.run(
        [tool("wg"), "pubkey"], input=private, capture_output=True, text=True, check=True
    ).stdout.strip()
    return private, public


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def shipped_line(host: str, start: str) -> int:
    lines = (REPO / "stacks" / f"{host}.toml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(start))


def shipped_key(host: str) -> str:
    for line in (REPO / "stacks" / f"{host}.toml").read_text().splitlines():
        if line.startswith("public_key = "):
            return line.split('"')[1]
    raise AssertionError(f"no public_key in {host}.toml")


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[SecretsProject, dict[str, str]]]:
    """The shipped stacks with fresh WireGuard keys: public keys in the stacks, private ones
    as secrets, every other secret set to a dummy value."""
    p = SecretsProject(tmp_path / "project")
    shutil.copytree(REPO / "stacks", p.stacks)
    private: dict[str, str] = {}
    for host in ("vps1", "vps2"):
        private[host], public = keypair()
        edit(p.stacks / f"{host}.toml", shipped_key(host), public)
        p.ok("build", host)
        names = json.loads((p.latest(host) / "manifest.json").read_text())["secrets"]
        for name in names:
            value = private[host] if name == "wireguard_private_key" else f"dummy-{name}"
            p.set(host, name, value)
    yield p, private


def test_public_key_is_checked_against_the_private_key(tmp_path: Path) -> None:
    p = SecretsProject(tmp_path / "project")
    shutil.copytree(REPO / "stacks", p.stacks)
    private, public = keypair()
    line = shipped_line("vps2", "public_key = ")
    p.ok("build", "vps2")  # no secrets file yet: builds, every secret marked unset
    names = json.loads((p.latest("vps2") / "manifest.json").read_text())["secrets"]
    p.set("vps2", "wireguard_private_key", private)
    refused = p.run("build", "vps2")
    assert refused.returncode == 2
    # reported with the other problems (the secrets not set yet), and with the right key
    assert (
        f"stacks/vps2.toml:{line}: wireguard.public_key: does not match the secret "
        f'wireguard_private_key: its public key is "{public}"; set public_key = "{public}"'
    ) in refused.stderr, refused.stderr
    assert "secret 'smtp_password' is not defined" in refused.stderr
    for name in names:
        if name != "wireguard_private_key":
            p.set("vps2", name, f"dummy-{name}")
    p.set("vps2", "wireguard_private_key", "not a key")
    refused = p.run("build", "vps2")
    assert refused.returncode == 2
    assert "wireguard.private_key: the secret wireguard_private_key is not a WireGuard" in (
        refused.stderr
    )
    p.set("vps2", "wireguard_private_key", private)
    edit(p.stacks / "vps2.toml", shipped_key("vps2"), public)
    built = p.run("build", "vps2")
    assert built.returncode == 0, built.stderr
    # vps1 reads vps2's public key from vps2's stack; it needs none of vps2's secrets
    vps1 = p.run("build", "vps1")
    assert vps1.returncode == 0, vps1.stderr
    conf = (p.latest("vps1") / "files/wireguard-wg0/wg0.conf").read_text()
    assert f"# vps2\n[Peer]\nPublicKey = {public}\nAllowedIPs = 10.8.0.2/32\n" in conf


def test_switch_completes_the_config_and_no_private_key_is_in_the_bundle(
    keyed: tuple[SecretsProject, dict[str, str]], tmp_path: Path
) -> None:
    p, private = keyed
    server = tmp_path / "vps1-root"
    server.mkdir()
    report = p.json("switch", "vps1", "--target", str(server))
    assert report["result"] == "ok"
    gen = p.latest("vps1")
    bundle_text = (gen / "files/wireguard-wg0/wg0.conf").read_text()
    assert "PrivateKey = @@bundle-secret:wireguard_private_key@@" in bundle_text
    for path in gen.rglob("*"):
        if path.is_file():
            assert private["vps1"].encode() not in path.read_bytes(), path
    unit = (server / "etc/systemd/system/wireguard-wg0.service").read_text()
    conf = shlex.split(unit.split("\nExecStart=", 1)[1].splitlines()[0])[-1]
    completed = server / conf.lstrip("/")
    assert f"PrivateKey = {private['vps1']}\n" in completed.read_text()
    assert completed.stat().st_mode & 0o777 == 0o600
    assert (completed.parents[2].stat().st_mode & 0o777) == 0o700  # rendered/<id>/
    assert (server / "etc/containers/systemd/synapse.pod").read_text().count(
        "After=wireguard-wg0.service"
    ) == 1


def _tunnel_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("the tunnel test needs root (network namespaces)", pytrace=False)
    if not Path("/dev/net/tun").exists():
        pytest.fail("the tunnel test needs /dev/net/tun", pytrace=False)
    for name in ("wg", "wg-quick", "wireguard-go", "ip", "prometheus", "curl"):
        tool(name)


class Namespaces:
    """Two network namespaces joined by a veth pair: 192.168.77.1 (a) and 192.168.77.2 (b)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"bta{tag}", f"btb{tag}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.down: list[tuple[str, str]] = []
        sh = ["ip", "netns"]
        for ns in (self.a, self.b):
            subprocess.run([*sh, "add", ns], check=True)
        va, vb = f"va{tag}", f"vb{tag}"
        steps = [
            ["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
            ["ip", "link", "set", va, "netns", self.a],
            ["ip", "link", "set", vb, "netns", self.b],
            ["ip", "-n", self.a, "addr", "add", "192.168.77.1/24", "dev", va],
            ["ip", "-n", self.b, "addr", "add", "192.168.77.2/24", "dev", vb],
        ]
        for ns, dev in ((self.a, va), (self.b, vb)):
            steps += [["ip", "-n", ns, "link", "set", dev, "up"]]
            steps += [["ip", "-n", ns, "link", "set", "lo", "up"]]
        for step in steps:
            subprocess.run(step, check=True)

    def run(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *args], capture_output=True, text=True, check=False
        )

    def start(self, ns: str, *args: str, cwd: Path | None = None) -> None:
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns, *args],
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns, conf in self.down:
            self.run(ns, "wg-quick", "down", conf)
        for ns in (self.a, self.b):
            # what is left in the namespace was started here (wireguard-go): end it by its id
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_vps2_scrapes_vps1_over_the_generated_tunnel(
    keyed: tuple[SecretsProject, dict[str, str]], tmp_path: Path
) -> None:
    _tunnel_tools()
    p, _private = keyed
    # test-only changes: the servers' public addresses are the veth ends; userspace WireGuard
    # keeps a socket per interface name in /var/run/wireguard, so the two sides need two names
    for host, ip, iface in (("vps1", "192.168.77.1", "wga"), ("vps2", "192.168.77.2", "wgb")):
        edit(
            p.stacks / f"{host}.toml",
            "[wireguard]\n",
            f'[wireguard]\nendpoint = "{ip}:51820"\ninterface = "{iface}"\n',
        )
    roots = {}
    for host in ("vps1", "vps2"):
        roots[host] = tmp_path / f"{host}-root"
        roots[host].mkdir()
        assert p.json("switch", host, "--target", str(roots[host]))["result"] == "ok"
    net = Namespaces()
    try:
        for host, ns, iface in (("vps1", net.a, "wga"), ("vps2", net.b, "wgb")):
            unit = (roots[host] / f"etc/systemd/system/wireguard-{iface}.service").read_text()
            start = shlex.split(unit.split("\nExecStart=", 1)[1].splitlines()[0])
            assert start[:2] == ["/usr/bin/wg-quick", "up"]
            conf = str(roots[host] / start[2].lstrip("/"))
            up = net.run(ns, "wg-quick", "up", conf)
            assert up.returncode == 0, up.stderr
            net.down.append((ns, conf))
        # vps1: a stand-in for Synapse's metrics listener, on the address the pod publishes
        site = tmp_path / "synapse"
        (site / "_synapse").mkdir(parents=True)
        (site / "_synapse/metrics").write_text("synapse_up 1\n")
        net.start(net.a, "python3", "-m", "http.server", "--bind", "10.8.0.1", "9009", cwd=site)
        # vps2: the real Prometheus with the generated configuration (scraping every second)
        etc = tmp_path / "etc-prometheus"
        shutil.copytree(p.latest("vps2") / "files/prometheus", etc)
        edit(etc / "prometheus.yml", "scrape_interval: 30s", "scrape_interval: 1s")
        net.start(
            net.b,
            shutil.which("prometheus") or "prometheus",
            f"--config.file={etc / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.listen-address=10.8.0.2:9090",
        )
        url = "http://10.8.0.2:9090/api/v1/query?query=up"
        deadline = time.monotonic() + 300
        up: dict[str, str] = {}
        while time.monotonic() < deadline:
            answer = net.run(net.b, "curl", "-fsS", "-m", "2", url)
            if answer.returncode == 0:
                results = json.loads(answer.stdout)["data"]["result"]
                up = {r["metric"]["job"]: r["value"][1] for r in results}
                if up.get("vps1/synapse") == "1" and up.get("vps2/prometheus") == "1":
                    break
            time.sleep(0.5)
        assert up.get("vps1/synapse") == "1", up
        assert up.get("vps2/prometheus") == "1", up
        # nothing else of vps1 listens in this test: those targets are down, not missing
        assert up.get("vps1/node-exporter") == "0", up
        handshake = net.run(net.a, "wg", "show", "wga", "latest-handshakes")
        assert handshake.returncode == 0 and handshake.stdout.split()[1] != "0"
    finally:
        net.close()
