"""Small loopback servers for the registry client's tests.

* `PagingProxy`: in front of a real registry. Debian's docker-registry (distribution 2.8)
  ignores `n` and `last` on tags/list and always answers with every tag; Docker Hub, ghcr.io
  and distribution 3 cut the list into pages linked by `Link: <…>; rel="next"`. The proxy
  forwards each request (with its Authorization header, so a token registry behind it still
  decides) and cuts the real answer into pages of `n`, as the OCI distribution spec says.
* `SilentServer`: accepts connections and never answers (a registry that hangs).
* `PlainHTTP`: answers every request with a fixed status, headers and body.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    httpd: ThreadingHTTPServer

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PagingProxy(_Server):
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")  # http://127.0.0.1:PORT
        self.pages: list[str] = []  # every tags/list request that got a 200, path and query
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                req = urllib.request.Request(proxy.upstream + url.path, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        status, body, upstream_headers = resp.status, resp.read(), resp.headers
                except urllib.error.HTTPError as e:
                    status, body, upstream_headers = e.code, e.read(), e.headers
                extra: dict[str, str] = {}
                if status == 200 and url.path.endswith("/tags/list"):
                    proxy.pages.append(self.path)
                    doc = json.loads(body)
                    tags = sorted(doc.get("tags") or [])
                    if "last" in query:
                        tags = [t for t in tags if t > query["last"]]
                    n = int(query.get("n", 0)) or len(tags)
                    page, more = tags[:n], len(tags) > n
                    body = json.dumps({"name": doc["name"], "tags": page}).encode()
                    if more:
                        nxt = urllib.parse.urlencode({"n": n, "last": page[-1]})
                        extra["Link"] = f'<{url.path}?{nxt}>; rel="next"'
                self.send_response(status)
                auth = upstream_headers.get("WWW-Authenticate")
                if auth:
                    self.send_header("WWW-Authenticate", auth)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


class PlainHTTP(_Server):
    def __init__(
        self,
        status: int = 200,
        body: bytes = b'{"tags": []}',
        headers: dict[str, str] | None = None,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


class SilentServer:
    """Listens on loopback; connections complete in the kernel and then nothing is said."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
