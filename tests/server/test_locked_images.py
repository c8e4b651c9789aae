"""A locked image on a real server: the tag moves on the registry, the lock follows it in a
reviewed change, and a rollback runs the bytes the older generation ran, not what the tag names."""

from __future__ import annotations

import json

from builder.testserver.webstack import web_stack, write_stack
from tests.harness import Registry
from tests.server.conftest import DeployProject

REPO = "locks/served"
IMAGE = f"registry.test:5000/{REPO}"


def test_a_rollback_runs_the_digest_its_generation_locked(
    deploy_project: DeployProject, registry: Registry
) -> None:
    p = deploy_project
    first = registry.push_busybox(REPO, "1.0.0", {"www/index.html": b"first bytes\n"}).digest
    stack = web_stack(host="lock = true\n").replace(
        'image = "registry.test:5000/bundle/web"\nversion = "1.0.0"\nports = ["0.0.0.0:8081',
        f'image = "{IMAGE}"\nversion = "1.0.0"\nports = ["0.0.0.0:8081',
    )
    assert IMAGE in stack
    write_stack(p.stacks, "web1", stack)
    p.env = {
        "BUNDLE_REGISTRY_MIRRORS": f"registry.test:5000=127.0.0.1:{registry.port}",
        "BUNDLE_INSECURE_REGISTRIES": "registry.test:5000",
    }
    refused = p.run("build", "web1")
    assert refused.returncode == 2 and "run `bundle lock web1`" in refused.stderr

    p.ok("lock", "web1")
    p.ok("switch", "web1")
    assert p.fetch(8081) == "first bytes\n"
    ran = p.target.ssh("podman container inspect other --format '{{.ImageDigest}}'").stdout
    assert ran.strip() == first

    # the tag moves: the server keeps running what the lock says until the lock is renewed
    moved = registry.push_busybox(REPO, "1.0.0", {"www/index.html": b"moved bytes\n"}).digest
    locked = p.ok("lock", "web1").stdout
    assert f"web1: image other: digest changed {first[:19]}… -> {moved[:19]}…" in locked
    p.ok("switch", "web1")
    assert p.fetch(8081) == "moved bytes\n"

    # generation 1 still names the first digest, and rolling back runs those bytes again
    gen1 = next(d for d in (p.bundles / "web1").glob("1-*") if d.is_dir())
    assert json.loads((gen1 / "manifest.json").read_text())["images"]["other"] == (
        f"{IMAGE}:1.0.0@{first}"
    )
    p.ok("rollback", "web1")
    assert p.fetch(8081) == "first bytes\n"
    ran = p.target.ssh("podman container inspect other --format '{{.ImageDigest}}'").stdout
    assert ran.strip() == first
