"""A service's `volumes:` as the stack's mounts; the docker socket and relative paths reported."""

from __future__ import annotations

from typing import Any

from builder.importer.draft import Draft, unit_name

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
PODMAN_SOCKET = (
    "the server runs podman, whose API socket gives root on the host: if this service must "
    "manage containers, mount /run/podman/podman.sock:/var/run/docker.sock by hand "
    "(after `systemctl enable --now podman.socket` on the server; rootless: "
    "/run/user/UID/podman/podman.sock)"
)


def volumes(spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    vols = []
    for i, v in enumerate(spec.get("volumes") or []):
        at = f"{where}.volumes[{i}]"
        if isinstance(v, dict):
            if v.get("type") not in (None, "volume", "bind"):
                d.note(at, f"a {v.get('type')} mount is not translated", "use a named volume")
                continue
            v = _short_volume(v, at, d)
        source, _, rest = str(v).partition(":")
        if not source or not rest:
            d.note(
                at, f"anonymous volume {v!r} not translated", "name it: NAME:" + (rest or source)
            )
        elif source in DOCKER_SOCKETS or source.endswith("/docker.sock"):
            d.note(at, f"the docker socket {source} is not mounted", PODMAN_SOCKET)
        elif source.startswith((".", "~")):
            d.note(at, f"relative bind mount {v!r} not translated",
                   "copy the folder to the server and use its absolute path, or a named volume")  # fmt: skip
        elif source.startswith("/"):
            vols.append(f"{source}:{rest}")
        else:
            volume = d.top_volumes.get(source)
            if volume is None:
                d.note(at, f"volume {source!r} is not declared under the top-level volumes")
                volume = unit_name(source)
            d.volumes.add(volume)
            vols.append(f"{volume}:{rest}")
    if vols:
        c["volumes"] = vols


def _short_volume(v: dict[str, Any], at: str, d: Draft) -> str:
    """The long volume syntax as SOURCE:TARGET[:OPTIONS]; what has no option is reported."""
    bind = v.get("bind") or {}
    opts = ["ro"] if v.get("read_only") else []
    opts += [str(bind[k]) for k in ("selinux", "propagation") if bind.get(k)]
    for key in sorted(set(map(str, v)) - {"type", "source", "target", "read_only", "bind"}):
        d.note(f"{at}.{key}", "not translated", "the mount has podman's defaults")
    kept = {"selinux", "propagation"} | (
        {"create_host_path"} if bind.get("create_host_path", True) else set()
    )
    for key in sorted(set(map(str, bind)) - kept):
        d.note(f"{at}.bind.{key}", "not translated", "the mount has podman's defaults")
    return f"{v.get('source', '')}:{v.get('target', '')}" + (f":{','.join(opts)}" if opts else "")
