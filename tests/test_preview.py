"""`bundle preview`: a built generation on a throwaway local server, pulled from the suite's
registry, health-checked, looked at, kept and stopped; refused in one line without root."""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builder.bundle.paths import Paths
from builder.commands.preview import run_preview, stop_preview
from builder.testserver import Target
from builder.testserver.target import target_base
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


# A registry the preview server has no route to, as docker.io is: TLS on a server of its own
# network namespace, relaying to the suite's registry (which it reaches at its gateway).
RELAY = """
import socket, ssl, sys, threading
host, port, cert, key, up_host, up_port = sys.argv[1:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.close()
        except OSError:
            pass
def serve(conn):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        up = socket.create_connection((up_host, int(up_port)), timeout=30)
    except OSError:
        conn.close()
        return
    threading.Thread(target=pump, args=(up, tls), daemon=True).start()
    pump(tls, up)
server = socket.create_server((host, int(port)))
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
"""


def self_signed(address: str, folder: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (folder / "cert.pem").write_text(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem", pem


def egress_processes(iface: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "builder.testserver.egress" in text and f"--iface={iface}" in text:
            found.append(text)
    return found


def test_a_preview_pulls_through_this_machine_from_a_registry_it_has_no_route_to(
    tmp_path: Path, registry: Registry
) -> None:
    with Target() as far:
        cert, key, pem = self_signed(far.host, tmp_path)
        relay = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                far.name,
                sys.executable,
                "-c",
                RELAY,
                far.host,
                "5443",
                str(cert),
                str(key),
                far.gateway,
                str(registry.port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "relay.log").open("wb"),
        )
        try:
            source = f"{far.host}:5443/bundle/web"
            root = tmp_path / "project"
            stack = STACK.replace("registry.test:5000/bundle/web", source)
            write_stack(root / "stacks", "web1", stack)
            assert bundle(root, "build", "web1").returncode == 0
            paths = Paths(root / "stacks", root / "bundles")
            trust = {f"/etc/containers/certs.d/{far.host}:5443/ca.crt": pem}
            lines: list[str] = []
            # no `registry`: the preview server knows no test registry at all
            assert run_preview(paths, "web1", None, True, lines.append, None, trust) is True, lines
            text = "\n".join(lines)
            assert "  generation 1 active; 1 image pulled" in lines
            address = json.loads((root / "bundles/web1/preview.json").read_text())["address"]
            n = address.split(".")[2]
            gateway = f"10.200.{n}.1"
            assert (
                f"  images: pulled by the preview server through this machine (http://{gateway}:"
                in text
            )
            assert "an HTTPS proxy for ports 443, 5443 only)" in text
            with urllib.request.urlopen(f"http://{address}:8080/", timeout=10) as answer:
                assert answer.read().decode() == "first from web1\n"

            key_path = next(ln.split()[3] for ln in lines if ln.startswith("kept: ssh -i "))
            quiet = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]

            def on_server(command: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    ["ssh", "-i", key_path, *quiet, f"root@{address}", command],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )

            # the registry is out of the server's own reach: only the proxy got there
            direct = on_server(
                f"curl -sS --max-time 10 --cacert /etc/containers/certs.d/{far.host}:5443/ca.crt https://{far.host}:5443/v2/"
            )
            assert direct.returncode != 0, direct
            envs = on_server("podman inspect --format '{{.Config.Env}}' $(podman ps -q)")
            assert envs.returncode == 0, envs
            assert "proxy" not in envs.stdout.lower(), envs.stdout
            log = target_base() / f"bundle-t{n}" / "egress.log"
            assert f"egress: CONNECT {far.host}:5443: 200 Connection established" in log.read_text()
            assert egress_processes(f"ve-bundle-t{n}"), "the kept preview keeps its way out"
        finally:
            relay.terminate()
            relay.wait(timeout=30)
            if (root / "bundles/web1/preview.json").exists():  # kept, also when it failed
                stop_preview(Paths(root / "stacks", root / "bundles"), "web1", lambda _: None)
        deadline = time.monotonic() + 30
        while egress_processes(f"ve-bundle-t{n}"):
            assert time.monotonic() < deadline, "the proxy outlived its server"
            time.sleep(0.2)
