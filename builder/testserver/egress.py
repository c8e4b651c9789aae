"""A way out for a preview server's image pulls: a CONNECT proxy on the host side of its veth.

A throwaway server has no route beyond this machine (tests must reach nothing else), yet a
preview pulls its images itself, as the real host would. This proxy is its one way out: it
listens on the host side of the server's veth, answers only the server's address, and tunnels
`CONNECT host:port` to the ports it is given (a preview: 443 and those its image references
name), never to this machine's loopback or link-local addresses. Podman on the server
is pointed at it by a containers.conf drop-in (`server_config`); containers are not given it.

It runs as its own process (`python -m builder.testserver.egress`), so that a kept preview keeps
its way out, and it ends by itself when the server's veth is gone, however the server stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from builder.testserver.processes import stop_process

HEAD_LIMIT = 8192  # a CONNECT request head is one short line and a few headers
IDLE_SECONDS = 30.0  # a client that sends no complete request head in this long is dropped
CONNECT_SECONDS = 30.0
WATCH_SECONDS = 1.0  # how often the proxy looks whether the server's veth still exists


def server_config(proxy: str, direct: Iterable[str] = ()) -> str:
    """The server's containers.conf drop-in: podman's pulls go through `proxy`, except to the
    hosts in `direct`; containers keep the environment they have on the real host."""
    env = [f"https_proxy={proxy}", f"HTTPS_PROXY={proxy}"]
    names = ",".join(sorted(direct))
    if names:
        env += [f"no_proxy={names}", f"NO_PROXY={names}"]
    quoted = ", ".join(f'"{item}"' for item in env)
    return (
        "# bundle preview: image pulls go out through the machine that booted this server\n"
        "[containers]\nhttp_proxy = false\n\n"
        f"[engine]\nenv = [{quoted}]\n"
    )


class Egress:
    """The proxy process for one server: `start`, then `stop` (or leave it with a kept server)."""

    def __init__(self, process: subprocess.Popen[bytes], address: str, port: int) -> None:
        self.process = process
        self.url = f"http://{address}:{port}"

    @classmethod
    def start(cls, listen: str, peer: str, iface: str, ports: Iterable[int], log: Path) -> Egress:
        """Listen on `listen` (a free port), answer `peer` only, end when `iface` is gone."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((listen, 0))
            sock.listen(64)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        __name__,
                        f"--fd={sock.fileno()}",
                        f"--peer={peer}",
                        f"--iface={iface}",
                        f"--ports={','.join(map(str, sorted(ports)))}",
                    ],
                    pass_fds=(sock.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a kept preview outlives this terminal
                )
            return cls(process, listen, int(sock.getsockname()[1]))
        finally:
            sock.close()

    def stop(self) -> None:
        stop_process(self.process)


# ---- the proxy process ----------------------------------------------------------------------


def _forbidden(address: str) -> bool:
    """This machine's own services and link-local neighbours are not the internet."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


def _read_head(conn: socket.socket) -> bytes | None:
    data = b""
    deadline = time.monotonic() + IDLE_SECONDS
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > HEAD_LIMIT:
            return None
        conn.settimeout(left)
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def _reply(conn: socket.socket, status: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _open(target: str, ports: set[int]) -> tuple[socket.socket | None, str]:
    host, colon, port = target.rpartition(":")
    host = host.strip("[]")
    if not colon or not port.isdigit() or not host:
        return None, "400 Bad Request"
    if int(port) not in ports:
        return None, "403 Forbidden"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return None, "502 Bad Gateway"
    allowed = [info for info in infos if not _forbidden(str(info[4][0]))]
    if not allowed:
        return None, "403 Forbidden"
    for family, kind, proto, _, address in allowed:
        upstream = socket.socket(family, kind, proto)
        try:
            upstream.settimeout(CONNECT_SECONDS)
            upstream.connect(address)
            upstream.settimeout(None)
            return upstream, "200 Connection established"
        except OSError:
            upstream.close()
    return None, "502 Bad Gateway"


def _serve_one(conn: socket.socket, ports: set[int]) -> None:
    with conn:
        try:
            head = _read_head(conn)
        except OSError:
            return
        if head is None:
            return
        words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(words) != 3 or words[0] != "CONNECT":
            _reply(conn, "405 Method Not Allowed")
            log(f"refused {' '.join(words)[:200]!r}: only CONNECT")
            return
        upstream, status = _open(words[1], ports)
        log(f"CONNECT {words[1]}: {status}")
        if upstream is None:
            _reply(conn, status)
            return
        with upstream:
            conn.settimeout(None)
            conn.sendall(f"HTTP/1.1 {status}\r\n\r\n".encode())
            back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
            back.start()
            _pump(conn, upstream)
            back.join()


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} egress: {line}", flush=True)


def serve(listener: socket.socket, peer: str, iface: str, ports: set[int]) -> None:
    """Accept until the interface `iface` is gone."""
    listener.settimeout(WATCH_SECONDS)
    gone = Path("/sys/class/net") / iface
    log(f"listening on {listener.getsockname()}, for {peer}, ports {sorted(ports)}")
    while gone.exists():
        try:
            conn, (address, _) = listener.accept()
        except TimeoutError:
            continue
        if address != peer:
            log(f"refused a connection from {address}")
            conn.close()
            continue
        threading.Thread(target=_serve_one, args=(conn, ports), daemon=True).start()
    log(f"{iface} is gone: stopping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder.testserver.egress")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--peer", required=True, help="the one address answered")
    parser.add_argument("--iface", required=True, help="stop when this interface is gone")
    parser.add_argument("--ports", required=True, help="comma-separated ports CONNECT may use")
    args = parser.parse_args(argv)
    ports = {int(p) for p in args.ports.split(",") if p}
    listener = socket.socket(fileno=args.fd)
    with contextlib.suppress(KeyboardInterrupt):
        serve(listener, args.peer, args.iface, ports)
    os._exit(0)  # tunnels still open end with the process


if __name__ == "__main__":
    sys.exit(main())
