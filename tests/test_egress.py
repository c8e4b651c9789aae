"""The preview server's way out (builder/testserver/egress.py), on loopback: what it refuses,
whom it answers, and that it ends by itself when the server's interface is gone.
(Tunnelling a real pull is tests/test_preview.py.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.commands.preview import registry_ports
from builder.testserver.egress import Egress, server_config


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[Egress, Path]]:
    log = tmp_path / "egress.log"
    egress = Egress.start("127.0.0.1", "127.0.0.1", "lo", {443, 5443}, log)
    try:
        yield egress, log
    finally:
        egress.stop()


def ask(egress: Egress, request: bytes, source: str = "127.0.0.1") -> bytes:
    host, port = egress.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as s:
        s.sendall(request)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except ConnectionResetError:  # closed with the request unread
            pass
        return answer


def test_only_connect_to_allowed_ports_of_other_machines_is_tunnelled(
    proxy: tuple[Egress, Path],
) -> None:
    egress, log = proxy
    with socket.create_server(("127.0.0.1", 0)) as local:
        port = local.getsockname()[1]
        # an allowed port on this machine's loopback: still refused
        loop = ask(egress, b"CONNECT 127.0.0.1:5443 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert loop.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        other = ask(egress, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        assert other.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    # refused on the port alone, before any name is looked up
    assert ask(egress, b"CONNECT registry.invalid:8443 HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.1 403 Forbidden\r\n"
    )
    assert ask(egress, b"GET http://example.org/ HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.1 405 Method Not Allowed\r\n"
    )
    assert ask(egress, b"CONNECT nothing HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    text = log.read_text()
    assert "egress: CONNECT 127.0.0.1:5443: 403 Forbidden" in text
    assert "egress: refused 'GET http://example.org/ HTTP/1.1': only CONNECT" in text


def test_it_answers_the_server_alone(proxy: tuple[Egress, Path]) -> None:
    egress, log = proxy
    assert ask(egress, b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", source="127.0.0.2") == b""
    deadline = time.monotonic() + 30
    while "refused a connection from 127.0.0.2" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_it_ends_when_the_servers_interface_is_gone(tmp_path: Path) -> None:
    egress = Egress.start("127.0.0.1", "127.0.0.1", "bundle-gone0", {443}, tmp_path / "log")
    try:
        assert egress.process.wait(timeout=60) == 0
    finally:
        egress.stop()
    assert "bundle-gone0 is gone: stopping" in (tmp_path / "log").read_text()


def test_the_ports_are_443_and_those_the_references_name() -> None:
    refs = [
        "docker.io/library/nextcloud:30",
        "ghcr.io/goauthentik/server:2025.2@sha256:" + "a" * 64,
        "registry.example.org:5000/team/app:1",
        "localhost:5001/app:2",
        "traefik:v3.3",
        "[fd00::1]:6000/app:1",
    ]
    assert registry_ports(refs) == {443, 5000, 5001, 6000}


def test_podman_on_the_server_uses_it_and_containers_do_not() -> None:
    text = server_config("http://10.200.7.1:41000", ["registry.test"])
    assert text.splitlines()[1:] == [
        "[containers]",
        "http_proxy = false",
        "",
        "[engine]",
        'env = ["https_proxy=http://10.200.7.1:41000", "HTTPS_PROXY=http://10.200.7.1:41000", '
        '"no_proxy=registry.test", "NO_PROXY=registry.test"]',
    ]
