"""An exported stack runs: podman's own Kubernetes runner, through a `.kube` quadlet unit (the
same systemd path as the stack's quadlet units), serves the page of a one-service stack.

podman runs Deployments, Pods, ConfigMaps, PersistentVolumeClaims (as named volumes), Secrets,
DaemonSets and Jobs, and skips every other kind; the Services, StatefulSets, Ingresses and
CronJobs of an export are checked by strict schema validation (tests/build/test_kube_export.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from builder.testserver.webstack import PAGE_TEMPLATE
from tests.harness import Target
from tests.server.conftest import make_deploy_project

STACK = f"""\
[host]
name = "web1"
address = "web1-test"

[vars]
message = "from kubernetes"

[volumes.web-data]

[containers.web]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8080:8080"]
volumes = ["web-data:/data"]
configs = [{{ template = "{PAGE_TEMPLATE}", mount = "/www/index.html" }}]
health = {{ cmd = "wget -qO- http://127.0.0.1:8080/", interval = "5s" }}
"""

KUBE_UNIT = """\
[Unit]
Description=web1 exported to Kubernetes, run by podman kube play

[Kube]
Yaml=/etc/containers/kube/web1.yaml
PublishPort=8080:8080

[Service]
TimeoutStartSec=600
"""


def test_an_exported_stack_serves_its_page_through_a_kube_unit(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    p = make_deploy_project(tmp_path, target, STACK)
    out = tmp_path / "k8s"
    p.ok("export", "web1", "--kube", "--out", str(out))
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    kinds = sorted(yaml.safe_load((out / f).read_text())["kind"] for f in listed)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"]
    # what `kubectl kustomize` would hand the cluster: every listed object, one stream
    stream = "".join(f"---\n{(out / f).read_text()}" for f in listed)
    target.write_file("/etc/containers/kube/web1.yaml", stream)
    target.write_file("/etc/containers/systemd/web1.kube", KUBE_UNIT)
    try:
        target.ssh("systemctl daemon-reload && systemctl start web1.service", timeout=900)
        assert p.fetch(8080) == "from kubernetes from web1\n"
        # the claim is a podman named volume, mounted where the stack mounts it
        assert "web-data" in target.ssh("podman volume ls --format '{{.Name}}'").stdout.split()
        names = target.ssh("podman ps --format '{{.Names}}'").stdout.split()
        web = [n for n in names if n.endswith("-web")]  # podman names it POD-CONTAINER
        assert len(web) == 1, names
        mounts = target.ssh(
            f"podman inspect --format '{{{{range .Mounts}}}}{{{{.Destination}}}} {{{{end}}}}' {web[0]}"
        ).stdout
        assert "/data" in mounts.split()
    finally:
        target.ssh(
            "systemctl stop web1.service; rm -f /etc/containers/systemd/web1.kube; systemctl daemon-reload",
            check=False,
        )
