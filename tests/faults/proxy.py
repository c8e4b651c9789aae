"""A faulty network between the deployer and the server: a TCP proxy on 127.0.0.1.

The deployer's ssh config points the host at the proxy (HostName 127.0.0.1, Port, and
HostKeyAlias so the server's pinned key still applies); each connection it opens is copied to
the server in both directions, counting the bytes that go to the server. Modes:

    pass                   a healthy network
    drop N                 the connection breaks once N bytes went to the server
    flip N                 byte number N on its way to the server arrives with one bit flipped
    stall N                after N bytes nothing more reaches the server (the connection stays
                           open); `stalled` is set when that happens
    drop-now               like pass, until `cut()` breaks every connection at once

When the deployer goes away (killed: the kernel closes its socket) the proxy closes the
connection to the server too, as a router would pass on the FIN.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Proxy:
    def __init__(self, host: str, port: int, mode: str = "pass", n: int = 0) -> None:
        self.upstream = (host, port)
        self.mode = mode
        self.n = n
        self.stalled = threading.Event()
        self._cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def close(self) -> None:
        self._closed = True
        self._cut.set()
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a reset from either side ends the connection
            self._copy(client)

    def _copy(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream, timeout=10)
        server.settimeout(None)
        sent = 0
        with contextlib.ExitStack() as stack:
            stack.callback(client.close)
            stack.callback(server.close)
            while not self._cut.is_set():
                readable, _, _ = select.select([client, server], [], [], 0.05)
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                if client not in readable:
                    continue
                data = client.recv(65536)
                if not data:
                    return  # the deployer is gone: so is its connection
                if self.mode == "drop" and sent + len(data) >= self.n:
                    server.sendall(data[: self.n - sent])
                    return
                if self.mode == "flip" and sent <= self.n < sent + len(data):
                    i = self.n - sent
                    data = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]
                if self.mode == "stall" and sent + len(data) >= self.n:
                    if sent < self.n:
                        server.sendall(data[: self.n - sent])
                        sent = self.n
                        self.stalled.set()
                    continue  # swallowed: nothing more reaches the server
                server.sendall(data)
                sent += len(data)
