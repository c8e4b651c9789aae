"""A real image registry for the test targets, and test images pushed into it from Python.

Debian's `docker-registry` (distribution 2.8) runs as a child process with its own config and
storage in a temporary folder, listening on 0.0.0.0:PORT (PORT is free and chosen at start) so
every netns target reaches it at the host side of its veth, 10.200.N.1:PORT.

Inside a target the registry is always called `registry.test:5000`: /etc/hosts maps
`registry.test` to 10.200.N.1 and a registries.conf.d entry marks it insecure and redirects
pulls of `registry.test:5000/...` to the real port (see `Registry.target_files`). Image
references in units therefore never change with the port. Only podman's image library follows
that redirect; a plain `curl registry.test:5000` from inside a target does not.

Images are built without docker or podman: one gzip layer holding a static busybox and a few
applet symlinks, an OCI image config and an OCI manifest, uploaded over the distribution HTTP
API with urllib.
"""

from __future__ import annotations

import ctypes
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from builder.testserver.processes import stop_process

REGISTRY_NAME = "registry.test"
REGISTRY_PORT = 5000
REGISTRY = f"{REGISTRY_NAME}:{REGISTRY_PORT}"

WORKDIR_PREFIX = "bundle-registry."
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "httpd", "sleep", "echo", "cat", "nc", "wget", "touch", "ls", "mkdir")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# PID 1 in the container: exit 0 on SIGTERM (busybox applets ignore it as PID 1, which makes
# every stop wait 10 s for SIGKILL), otherwise run the command and return its status.
ENTRYPOINT = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; \"$@\" & wait $!", "sh"]
DEFAULT_CMD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


class RegistryError(RuntimeError):
    """The registry did not start, or refused an upload."""


@dataclass(frozen=True)
class PushedImage:
    """An image in the test registry, as a target names it."""

    ref: str  # registry.test:5000/REPO:TAG
    repo: str
    tag: str
    digest: str  # sha256:... of the manifest


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _sweep_stale_workdirs() -> None:
    """Remove the folders of registries whose test process died (nobody holds their lock)."""
    for workdir in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            if time.time() - workdir.stat().st_mtime < 60:  # may be starting right now
                continue
            fd = os.open(workdir / "owner.lock", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_layer(extra_files: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed, reproducible layer tar: /bin/busybox, applet symlinks, extra files."""
    if not BUSYBOX.is_file():
        raise RegistryError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    files: dict[str, tuple[bytes, int]] = {"bin/busybox": (BUSYBOX.read_bytes(), 0o755)}
    for path, data in (extra_files or {}).items():
        files[path.strip("/")] = (data, 0o644)
    dirs = {"bin"}
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            add(info)
        for path, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            add(info, data)
        for applet in APPLETS:
            if f"bin/{applet}" in files:
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            add(info)
    return buf.getvalue()


class Registry:
    """A running docker-registry child process. Use `Registry.start()`, then `stop()`."""

    def __init__(
        self, workdir: Path, port: int, process: subprocess.Popen[bytes], owner_fd: int
    ) -> None:
        self.workdir = workdir
        self._owner_fd = owner_fd  # flock held while this registry lives
        self.port = port
        self.process = process
        self.url = f"http://127.0.0.1:{port}"  # what the host uses to push
        self.log_path = workdir / "registry.log"
        self.pushed: dict[str, PushedImage] = {}  # "REPO:TAG" -> image, in push order

    @classmethod
    def start(cls, binary: str = "docker-registry", attempts: int = 5) -> Registry:
        exe = shutil.which(binary)
        if exe is None:
            raise RegistryError(f"{binary} not found (apt-get install docker-registry)")
        _sweep_stale_workdirs()
        workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        owner = os.open(workdir / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(owner, fcntl.LOCK_EX)
        last_log = ""
        for _ in range(attempts):
            port = _free_port()
            config = workdir / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
                "  delete:\n    enabled: true\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                f"http:\n  addr: 0.0.0.0:{port}\n"
            )
            log = (workdir / "registry.log").open("ab")
            process = subprocess.Popen(
                [exe, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
            log.close()
            registry = cls(workdir, port, process, owner)
            if registry._wait_ready(timeout=15.0):
                return registry
            registry._terminate()
            last_log = registry.log_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(workdir, ignore_errors=True)
        os.close(owner)
        raise RegistryError(f"docker-registry did not start:\n{last_log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        stop_process(self.process)

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._owner_fd >= 0:
            os.close(self._owner_fd)
            self._owner_fd = -1

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- what a target needs to reach it ------------------------------------------------

    def registries_conf(self) -> str:
        """A registries.conf.d file for a target: `registry.test:5000` is insecure (plain
        HTTP) and its pulls go to this registry's real port on the same host name."""
        return (
            "# written by the test harness: the session's docker-registry\n"
            "[[registry]]\n"
            f'prefix = "{REGISTRY}"\n'
            f'location = "{REGISTRY_NAME}:{self.port}"\n'
            "insecure = true\n"
        )

    def mirrors_conf(self, *registries: str) -> str:
        """A registries.conf.d file for a target: pulls from these public registries (such as
        `docker.io`) are served by this registry, under the same repository path and tag."""
        blocks = [
            f'[[registry]]\nprefix = "{name}"\nlocation = "{name}"\n'
            f'[[registry.mirror]]\nlocation = "{REGISTRY_NAME}:{self.port}"\ninsecure = true\n'
            for name in registries
        ]
        return "# written by the test harness: the session's docker-registry\n" + "".join(blocks)

    # ---- pushing --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if not url.startswith("http"):
            url = self.url + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = _sha256(data)
        status, _, _ = self._request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self._request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise RegistryError(f"starting a blob upload to {repo}: HTTP {status} {body[:300]!r}")
        location = urllib.parse.urljoin(self.url + "/", headers["Location"])
        sep = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if status != 201:
            raise RegistryError(f"uploading blob {digest} to {repo}: HTTP {status} {body[:300]!r}")
        return digest

    def push_busybox(
        self,
        repo: str,
        tag: str,
        extra_files: dict[str, bytes] | None = None,
        *,
        cmd: list[str] | None = None,
        entrypoint: list[str] | None = None,
        port: int = 8080,
    ) -> PushedImage:
        """Push a busybox image as REPO:TAG and return how targets name it.

        The image holds /bin/busybox with the applets sh httpd sleep echo cat nc wget touch ls
        mkdir, /etc/image-ref (`REPO:TAG`), /www/index.html (`REPO:TAG`) and `extra_files`
        (path -> content, mode 0644; they may replace the two files above). Its default
        command is `httpd -f -p 8080 -h /www`; the entrypoint is a small sh wrapper that exits
        0 on SIGTERM so stopping a unit is instant. Distinct tags give distinct digests.
        `cmd`, `entrypoint` and `port` (the exposed one) replace those defaults, so an image can
        stand in for a public one whose command line a stack already gives.
        """
        files = {
            "etc/image-ref": f"{repo}:{tag}\n".encode(),
            "www/index.html": f"{repo}:{tag}\n".encode(),
        }
        files.update({k.strip("/"): v for k, v in (extra_files or {}).items()})
        layer_tar = busybox_layer(files)
        layer_gz = gzip.compress(layer_tar, compresslevel=6, mtime=0)
        config = {
            "architecture": _oci_arch(),
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin"],
                "Entrypoint": ENTRYPOINT if entrypoint is None else entrypoint,
                "Cmd": DEFAULT_CMD if cmd is None else cmd,
                "ExposedPorts": {f"{port}/tcp": {}},
                "WorkingDir": "/",
                "Labels": {"org.opencontainers.image.version": tag},
            },
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
            "history": [{"created_by": f"bundle test registry push_busybox {repo}:{tag}"}],
        }
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        layer_digest = self.push_blob(repo, layer_gz)
        config_digest = self.push_blob(repo, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [
                {"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer_gz)}
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        status, _, body = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            data=manifest_bytes,
            headers={"Content-Type": OCI_MANIFEST},
        )
        if status != 201:
            raise RegistryError(f"putting manifest {repo}:{tag}: HTTP {status} {body[:300]!r}")
        image = PushedImage(f"{REGISTRY}/{repo}:{tag}", repo, tag, _sha256(manifest_bytes))
        self.pushed[f"{repo}:{tag}"] = image
        return image

    def tags(self, repo: str) -> list[str]:
        status, _, body = self._request("GET", f"/v2/{repo}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise RegistryError(f"listing tags of {repo}: HTTP {status}")
        return list(json.loads(body).get("tags") or [])
