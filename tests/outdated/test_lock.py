"""`bundle lock` and locked builds against the session's real registry: a tag moved between two
builds, the diff a reviewer reads, `[host] lock = true`, and podman's quadlet reading the unit."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.images.auth import auth_files, credential_for
from builder.images.registry import RegistryClient, RegistryProblem, locate
from builder.testserver.registry import OCI_MANIFEST, _oci_arch
from tests.harness import Registry
from tests.outdated.conftest import APP, LOGINS, PRIVATE, REGISTRY, StackProject
from tests.outdated.loopback import PlainHTTP
from tests.outdated.test_outdated import mirror_env, reg_address
from tests.outdated.tokenauth import TokenRegistry

REPO = "locks/app"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = f"{REGISTRY}/{REPO}"
# no registry answers here: a build that asked one would fail
OFFLINE = {
    "BUNDLE_REGISTRY_MIRRORS": f"{REGISTRY}=127.0.0.1:9",
    "BUNDLE_INSECURE_REGISTRIES": REGISTRY,
}


@pytest.fixture(scope="module")
def locks_registry(registry: Registry) -> Registry:
    for tag in ("1.0.0", "1.1.0"):
        registry.push_busybox(REPO, tag)
    return registry


def write_host(project: StackProject, host: str, version: str, lock: bool = False) -> None:
    project.write(
        f"{host}.toml",
        f'[host]\nname = "{host}"\naddress = "{host}.example.org"\n'
        + ("lock = true\n" if lock else "")
        + f'\n[containers.app]\nimage = "{IMAGE}"\nversion = "{version}"\n'
        + f'\n[containers.other]\nimage = "{IMAGE}"\nversion = "1.1.0"\n',
    )


def unit_image(project: StackProject, host: str, generation: int) -> tuple[str, dict[str, str]]:
    gen = next(p for p in (project.bundles / host).glob(f"{generation}-*") if p.is_dir())
    unit = (gen / "units/quadlet/app.container").read_text()
    image = next(line for line in unit.splitlines() if line.startswith("Image="))
    return image, json.loads((gen / "manifest.json").read_text())["images"]


def test_a_moved_tag_is_a_reviewed_change(
    locks_registry: Registry, stack_project: StackProject
) -> None:
    env = mirror_env(reg_address(locks_registry))
    write_host(stack_project, "lk1", "1.0.0")
    first = locks_registry.pushed[f"{REPO}:1.0.0"].digest

    r = stack_project.run("lock", "lk1", env=env)
    assert r.returncode == 0, r.stderr
    assert f"lk1: image app: added {IMAGE}:1.0.0@{first}" in r.stdout
    assert "lk1: wrote stacks/lock/lk1.json (2 images)" in r.stdout
    lock_file = stack_project.stacks / "lock/lk1.json"
    lock = json.loads(lock_file.read_text())
    assert lock["images"]["app"] == {"image": IMAGE, "tag": "1.0.0", "digest": first}
    assert list(lock["images"]) == ["app", "other"]
    written = lock_file.read_bytes()
    assert stack_project.run("lock", "lk1", env=env).stdout == (
        "lk1: stacks/lock/lk1.json up to date (2 images)\n"
    )
    assert lock_file.read_bytes() == written  # the same lock is the same bytes

    # a build reads the lock, never a registry
    r = stack_project.run("build", "lk1", env=OFFLINE)
    assert r.returncode == 0, r.stderr
    image, images = unit_image(stack_project, "lk1", 1)
    assert image == f"Image={IMAGE}:1.0.0@{first}"
    assert images["app"] == f"{IMAGE}:1.0.0@{first}"  # the manifest keeps tag and digest

    # the tag moves on the registry: another image pushed under 1.0.0
    moved = locks_registry.push_busybox(REPO, "1.0.0", {"www/index.html": b"moved\n"}).digest
    assert moved != first
    assert stack_project.run("build", "lk1", env=OFFLINE).returncode == 0  # not until re-locked
    assert unit_image(stack_project, "lk1", 1)[0] == f"Image={IMAGE}:1.0.0@{first}"
    assert not list((stack_project.bundles / "lk1").glob("2-*"))

    r = stack_project.run("lock", "lk1", env=env)
    assert r.returncode == 0, r.stderr
    assert f"lk1: image app: digest changed {first[:19]}… -> {moved[:19]}…" in r.stdout
    assert "other" not in r.stdout.split("wrote")[0]
    assert stack_project.run("build", "lk1", env=OFFLINE).returncode == 0
    r = stack_project.run("diff", "lk1", env=OFFLINE)
    assert r.returncode == 0, r.stderr
    assert f"  app: digest changed {first[:19]}… -> {moved[:19]}…" in r.stdout.splitlines()
    assert f"-Image={IMAGE}:1.0.0@{first}" in r.stdout
    assert f"+Image={IMAGE}:1.0.0@{moved}" in r.stdout

    # a rollback to generation 1 runs what generation 1 ran: its manifest names the old digest
    assert unit_image(stack_project, "lk1", 1)[1]["app"] == f"{IMAGE}:1.0.0@{first}"
    assert unit_image(stack_project, "lk1", 2)[1]["app"] == f"{IMAGE}:1.0.0@{moved}"

    # a tag changed in the stack runs the tag (the lock is for the old one) until locked again
    stack_project.edit("lk1.toml", 'version = "1.0.0"', 'version = "1.1.0"')
    assert stack_project.run("build", "lk1", env=OFFLINE).returncode == 0
    assert unit_image(stack_project, "lk1", 3)[0] == f"Image={IMAGE}:1.1.0"
    r = stack_project.run("lock", "lk1", env=env)
    second = locks_registry.pushed[f"{REPO}:1.1.0"].digest
    assert f"lk1: image app: 1.0.0 -> 1.1.0 (digest {moved[:19]}… -> {second[:19]}…)" in r.stdout


def test_lock_true_refuses_what_the_lock_lacks(
    locks_registry: Registry, stack_project: StackProject
) -> None:
    write_host(stack_project, "lk2", "1.0.0", lock=True)
    r = stack_project.run("build", "lk2", env=OFFLINE)
    assert r.returncode == 2
    assert r.stderr == (
        f"error: lk2: containers.app: {IMAGE}:1.0.0 is not in stacks/lock/lk2.json and "
        "[host] lock = true: run `bundle lock lk2`\n"
    )
    assert not (stack_project.bundles / "lk2").is_dir() or not list(
        (stack_project.bundles / "lk2").glob("1-*")
    )
    assert (
        stack_project.run("lock", "lk2", env=mirror_env(reg_address(locks_registry))).returncode
        == 0
    )
    assert stack_project.run("build", "lk2", env=OFFLINE).returncode == 0

    stack_project.edit("lk2.toml", 'version = "1.0.0"', 'version = "1.1.0"')
    r = stack_project.run("build", "lk2", env=OFFLINE)
    assert r.returncode == 2
    assert r.stderr == (
        f"error: lk2: containers.app: {IMAGE}:1.1.0 is locked in stacks/lock/lk2.json as "
        f"{IMAGE}:1.0.0 and [host] lock = true: run `bundle lock lk2`\n"
    )
    assert r.stdout == ""


def test_a_damaged_lock_is_one_line(stack_project: StackProject) -> None:
    write_host(stack_project, "lk3", "1.0.0")
    stack_project.write("lock/lk3.json", '{"format": 1, "host": "lk3", "images": {"app": {}}}')
    r = stack_project.run("build", "lk3", env=OFFLINE)
    assert r.returncode == 2
    assert r.stderr == (
        "error: stacks/lock/lk3.json: images.app needs image, tag and digest; "
        "write it again with `bundle lock lk3`\n"
    )


def test_a_registry_that_fails_leaves_the_lock(
    locks_registry: Registry, stack_project: StackProject
) -> None:
    write_host(stack_project, "lk4", "1.0.0")
    env = mirror_env(reg_address(locks_registry))
    assert stack_project.run("lock", "lk4", env=env).returncode == 0
    before = (stack_project.stacks / "lock/lk4.json").read_bytes()
    stack_project.edit("lk4.toml", 'version = "1.0.0"', 'version = "9.9.9"')
    r = stack_project.run("lock", "lk4", env=env)
    assert r.returncode == 1
    assert f"error: lk4: app: {REGISTRY} has no tag 9.9.9 of {REPO}" in r.stderr.splitlines()
    assert "error: lk4: stacks/lock/lk4.json left as it was" in r.stderr.splitlines()
    assert (stack_project.stacks / "lock/lk4.json").read_bytes() == before


def test_quadlet_reads_a_locked_image(
    locks_registry: Registry, stack_project: StackProject, quadlet_bin: Path, tmp_path: Path
) -> None:
    write_host(stack_project, "lk5", "1.1.0")
    assert (
        stack_project.run("lock", "lk5", env=mirror_env(reg_address(locks_registry))).returncode
        == 0
    )
    assert stack_project.run("build", "lk5", env=OFFLINE).returncode == 0
    gen = next(p for p in (stack_project.bundles / "lk5").glob("1-*") if p.is_dir())
    r = subprocess.run(
        [str(quadlet_bin), "-dryrun"],
        env={**os.environ, "QUADLET_UNIT_DIRS": str(gen / "units/quadlet")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    digest = locks_registry.pushed[f"{REPO}:1.1.0"].digest
    exec_start = next(
        line for line in r.stdout.splitlines() if line.startswith("ExecStart=") and "app" in line
    )
    assert exec_start.endswith(f" {IMAGE}:1.1.0@{digest}")


# ---- credentials, as podman finds them ------------------------------------------------------


def write_auth(path: Path, key: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {key: {"auth": token}}}))
    return path


def test_auth_files_in_podmans_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    assert auth_files(env) == [
        tmp_path / "run/containers/auth.json",
        home / ".config/containers/auth.json",
        home / ".docker/config.json",
    ]
    assert auth_files({**env, "REGISTRY_AUTH_FILE": "/x/auth.json"}) == [Path("/x/auth.json")]
    # the first file with an entry wins; a namespace entry beats its registry's
    write_auth(home / ".config/containers/auth.json", "quay.io", "bob", "pw1")
    assert credential_for("quay.io", "team/app", env).user == "bob"  # type: ignore[union-attr]
    write_auth(tmp_path / "run/containers/auth.json", "quay.io/team", "carol", "pw2")
    assert credential_for("quay.io", "team/app", env).user == "carol"  # type: ignore[union-attr]
    assert credential_for("quay.io", "other/app", env).user == "bob"  # type: ignore[union-attr]
    assert credential_for("ghcr.io", "team/app", env) is None
    write_auth(home / ".docker/config.json", "https://index.docker.io/v1/", "dan", "pw3")
    cred = credential_for("docker.io", "library/nginx", env)
    assert cred is not None and cred.user == "dan" and "pw3" not in repr(cred)


def test_a_private_image_with_podmans_login(
    app_registry: Registry,
    token_registry: TokenRegistry,
    stack_project: StackProject,
    tmp_path: Path,
) -> None:
    write_host(stack_project, "lk6", "1.0.0")
    stack_project.edit("lk6.toml", f'image = "{IMAGE}"', f'image = "{REGISTRY}/{PRIVATE}"')
    env = mirror_env(token_registry.address)
    r = stack_project.run("lock", "lk6", env=env)
    assert r.returncode == 1
    assert "with an anonymous token" in r.stderr

    user, password = next(iter(LOGINS.items()))
    auth = write_auth(tmp_path / "auth.json", REGISTRY, user, "wrong")
    r = stack_project.run("lock", "lk6", env={**env, "REGISTRY_AUTH_FILE": str(auth)})
    assert r.returncode == 1
    assert f"with the credentials in {auth}" in r.stderr
    assert "wrong" not in r.stderr + r.stdout

    # where `podman login` writes: ${XDG_RUNTIME_DIR}/containers/auth.json
    run = tmp_path / "run"
    write_auth(run / "containers/auth.json", REGISTRY, user, password)
    r = stack_project.run("lock", "lk6", env={**env, "XDG_RUNTIME_DIR": str(run)})
    assert r.returncode == 0, r.stderr
    lock = json.loads((stack_project.stacks / "lock/lk6.json").read_text())
    assert lock["images"]["app"]["digest"] == app_registry.pushed[f"{PRIVATE}:1.0.0"].digest
    assert password not in r.stdout + r.stderr


# ---- bundle update -------------------------------------------------------------------------

COMMENTED = """# the host's own file: comments and layout must survive an update
[host]
name = "up1"
address = "up1.example.org"   # the public name

[containers.app]
image = "{image}"
version   =   '1.2.0'   # pinned after the 1.2 release notes
# a comment between keys

[containers.fresh]
image = "{image}"
version = "1.3.0"
"""


def test_update_raises_versions_and_keeps_the_file(
    app_registry: Registry, stack_project: StackProject
) -> None:
    env = mirror_env(reg_address(app_registry))
    text = COMMENTED.format(image=f"{REGISTRY}/{APP}")
    path = stack_project.write("up1.toml", text)

    r = stack_project.run("update", "up1", "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    assert path.read_text() == text
    assert "dry run: nothing written" in r.stdout

    r = stack_project.run("update", "up1", env=env)
    assert r.returncode == 0, r.stderr
    # byte for byte, only the version string changed (quotes, spacing and comment kept)
    assert path.read_text() == text.replace("'1.2.0'", "'1.3.0'")
    assert "-version   =   '1.2.0'   # pinned after the 1.2 release notes" in r.stdout
    assert "+version   =   '1.3.0'   # pinned after the 1.2 release notes" in r.stdout
    assert "up1: image app: 1.2.0 -> 1.3.0" in r.stdout.splitlines()
    assert "up1: image fresh" not in r.stdout

    r = stack_project.run("update", "up1", env=env)
    assert (r.returncode, r.stdout) == (3, "up1: nothing to update\n")

    r = stack_project.run("update", "up1", "--major", "--only", "fresh", env=env)
    assert r.returncode == 0, r.stderr
    assert path.read_text() == text.replace("'1.2.0'", "'1.3.0'").replace(
        'version = "1.3.0"', 'version = "2.0.1"'
    )
    r = stack_project.run("update", "up1", "--only", "nope", env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --only nope: no such enabled container in up1")


def test_update_refreshes_the_lock(app_registry: Registry, stack_project: StackProject) -> None:
    env = mirror_env(reg_address(app_registry))
    shared = stack_project.write(
        "shared/app.toml",
        f'[containers.app]\nimage = "{REGISTRY}/{APP}"\nversion = "1.2.0"  # shared pin\n',
    )
    stack_project.write(
        "up2.toml",
        'include = ["shared/app.toml"]\n'
        '[host]\nname = "up2"\naddress = "up2.example.org"\nlock = true\n',
    )
    r = stack_project.run("update", "up2", env=env)
    assert r.returncode == 0, r.stderr
    # the version is raised where it is set: the shared file
    assert shared.read_text().endswith('version = "1.3.0"  # shared pin\n')
    new = app_registry.pushed[f"{APP}:1.3.0"].digest
    assert f"up2: image app: added {REGISTRY}/{APP}:1.3.0@{new}" in r.stdout.splitlines()
    lock = json.loads((stack_project.stacks / "lock/up2.json").read_text())
    assert lock["images"]["app"] == {"image": f"{REGISTRY}/{APP}", "tag": "1.3.0", "digest": new}
    assert stack_project.run("build", "up2", env=OFFLINE).returncode == 0


def test_a_multi_arch_tag_locks_to_its_index(
    locks_registry: Registry, stack_project: StackProject
) -> None:
    """`podman pull IMAGE@DIGEST` of a multi-arch image wants the index, not one platform's."""
    single = locks_registry.pushed[f"{REPO}:1.1.0"]
    status, _, body = locks_registry._request(
        "GET", f"/v2/{REPO}/manifests/{single.digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert status == 200
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": single.digest,
                    "size": len(body),
                    "platform": {"architecture": _oci_arch(), "os": "linux"},
                }
            ],
        },
        sort_keys=True,
    ).encode()
    status, _, _ = locks_registry._request(
        "PUT", f"/v2/{REPO}/manifests/1.1.0-multi", data=index, headers={"Content-Type": OCI_INDEX}
    )
    assert status == 201
    write_host(stack_project, "lk7", "1.1.0-multi")
    r = stack_project.run("lock", "lk7", env=mirror_env(reg_address(locks_registry)))
    assert r.returncode == 0, r.stderr
    lock = json.loads((stack_project.stacks / "lock/lk7.json").read_text())
    assert lock["images"]["app"]["digest"] == "sha256:" + hashlib.sha256(index).hexdigest()
    assert lock["images"]["app"]["digest"] != single.digest


def test_an_answer_that_is_not_a_manifest_is_refused() -> None:
    cases = [
        (b"<html>login</html>", {}, "not valid JSON"),
        (b'{"schemaVersion": 1, "name": "x"}', {}, "not an image manifest or index"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(),
            {"docker-content-digest": "sha256:" + "0" * 64},
            "do not match its Docker-Content-Digest",
        ),
    ]
    for body, headers, said in cases:
        with PlainHTTP(status=200, body=body, headers=headers) as server:
            where = locate(f"{REGISTRY}/{REPO}", {REGISTRY: f"http://{server.address}"}, set())
            with pytest.raises(RegistryProblem) as e:
                RegistryClient().digest(where, "1.0.0")
        assert str(e.value).startswith(f"{REGISTRY} sent a manifest for {REPO}:1.0.0"), e.value
        assert said in str(e.value)


def test_update_keeps_windows_line_ends(
    app_registry: Registry, stack_project: StackProject
) -> None:
    text = COMMENTED.format(image=f"{REGISTRY}/{APP}").replace("up1", "up3").replace("\n", "\r\n")
    path = stack_project.write("up3.toml", "")
    path.write_bytes(text.encode())
    r = stack_project.run("update", "up3", env=mirror_env(reg_address(app_registry)))
    assert r.returncode == 0, r.stderr
    assert path.read_bytes() == text.replace("'1.2.0'", "'1.3.0'").encode()
