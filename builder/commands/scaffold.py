"""`bundle init`: a stacks folder that builds at once, with comments that teach the syntax."""

from __future__ import annotations

from pathlib import Path

from builder.base.errors import BundleError

FILES = {
    "stacks/web1.toml": """\
# A host's stack: everything web1 runs. Build it with `bundle build web1`.
# Every key is described in docs/stack-reference.md.

# Shared definitions, written once for several hosts; this file overrides what it repeats.
include = ["shared/node-exporter.toml"]

[host]
name = "web1"                    # must match the file name
address = "web1.example.org"     # SSH address, or a Host alias from ~/.ssh/config
ssh_user = "root"
tags = ["production"]            # select hosts by tag: bundle switch @production

# Values for templates: {{ vars.domain }}
[vars]
domain = "example.org"
greeting = "Hello"

# A named podman volume (quadlet site-data.volume)
[volumes.site-data]

# A container (quadlet site.container -> systemd site.service)
[containers.site]
image = "docker.io/library/nginx"            # no tag here...
version = "1.27.3"                           # ...the version is always pinned ("latest" is refused)
ports = ["8080:80"]                          # [IP:]HOST_PORT:CONTAINER_PORT: http://SERVER:8080/
                                             # ("127.0.0.1:8080:80" keeps it off the network)
volumes = ["site-data:/srv/data"]
configs = [
  # rendered from stacks/templates/, shipped in the bundle, mounted read-only
  { template = "site/index.html.j2", mount = "/usr/share/nginx/html/index.html" },
]
environment = { TZ = "UTC" }

# A script on a timer (systemd backup.service + backup.timer)
[scripts.backup]
run = "echo 'back up /srv here'"
on_calendar = "daily"
""",
    "stacks/web1-staging.toml": """\
# A staging copy of web1: only what differs is written here.
extends = "web1"

[host]
name = "web1-staging"
address = "staging.web1.example.org"
tags = ["staging"]

[vars]
domain = "staging.example.org"

# staging keeps nothing worth backing up
[scripts.backup]
enabled = false
""",
    "stacks/shared/node-exporter.toml": """\
# Shared by every host that includes it; hosts override single keys.
[containers.node-exporter]
image = "quay.io/prometheus/node-exporter"
version = "v1.8.2"
command = ["--path.rootfs=/host", "--web.listen-address=127.0.0.1:9100"]
volumes = ["/:/host:ro,rslave"]
networks = ["host"]
""",
    "stacks/templates/site/index.html.j2": """\
<!doctype html>
<title>{{ host.name }}</title>
<h1>{{ vars.greeting }} from {{ host.name }} ({{ vars.domain }})</h1>
""",
    "bundles/README.md": """\
# bundles/

Build output, one folder per host: `bundles/HOST/<N>-<hash12>/` and its `.tar.zst`.
Written by `bundle build`; not edited by hand.
""",
    ".gitignore": "/bundles/*\n!/bundles/README.md\n",
}


def scaffold(root: Path) -> list[Path]:
    """Write the example project under `root`; refuse to touch an existing stacks folder."""
    if (root / "stacks").exists():
        raise BundleError(
            f"{root / 'stacks'} already exists; run `bundle init` in an empty folder", 2
        )
    written = []
    for rel, text in FILES.items():
        path = root / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
