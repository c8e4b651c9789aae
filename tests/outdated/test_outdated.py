"""`bundle outdated` against a real docker-registry on loopback, holding tags pushed here."""

from __future__ import annotations

import json

from builder.bundle.paths import Paths
from builder.images.outdated import check_hosts
from builder.images.registry import RegistryClient, locate
from tests.harness import Registry
from tests.outdated.conftest import APP, APP_TAGS, REGISTRY, StackProject
from tests.outdated.loopback import SilentServer
from tests.outdated.tokenauth import TokenRegistry


def mirror_env(address: str, *extra: str) -> dict[str, str]:
    """registry.test:5000 is the session registry at 127.0.0.1:PORT, over plain HTTP."""
    return {
        "BUNDLE_REGISTRY_MIRRORS": " ".join([f"{REGISTRY}={address}", *extra]),
        "BUNDLE_INSECURE_REGISTRIES": f"{REGISTRY},{address}",
    }


def reg_address(registry: Registry) -> str:
    return f"127.0.0.1:{registry.port}"


APP_STACK = {
    "app": {"image": f"{REGISTRY}/{APP}", "version": "1.2.0"},
    "app-alpine": {"image": f"{REGISTRY}/{APP}", "version": "1.4.0-alpine"},
    "app-new": {"image": f"{REGISTRY}/{APP}", "version": "2.0.1"},
}


def table(stdout: str) -> dict[str, list[str]]:
    """SERVICE -> the other cells of its row (cells are separated by two or more spaces)."""
    import re

    rows = {}
    for line in stdout.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 5:
            rows[cells[0]] = cells[1:]
    return rows


def test_outdated_shows_newest_in_major_and_newest(
    app_registry: Registry, stack_project: StackProject
) -> None:
    assert set(APP_TAGS) <= set(app_registry.tags(APP))
    stack_project.write_stack("app1", APP_STACK)
    r = stack_project.run("outdated", "app1", env=mirror_env(reg_address(app_registry)))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    header = r.stdout.splitlines()[0].split()
    assert header == ["SERVICE", "IMAGE", "PINNED", "NEWEST", "IN", "MAJOR", "NEWEST"]
    rows = table(r.stdout)
    image = f"{REGISTRY}/{APP}"
    # 1.2.0: 1.3.0 in its major, 2.0.1 overall; 2.1.0-rc1 is a pre-release, 1.4.0-alpine a variant
    assert rows["app"] == [image, "1.2.0", "1.3.0 *", "2.0.1 *"]
    assert rows["app-alpine"] == [image, "1.4.0-alpine", "1.4.0-alpine", "1.4.0-alpine"]
    assert rows["app-new"] == [image, "2.0.1", "2.0.1", "2.0.1"]
    assert "* newer than the pinned version" in r.stdout
    assert "app: bundle update raises 1.2.0 -> 1.3.0" in r.stdout.splitlines()
    assert "app: bundle update --major raises 1.2.0 -> 2.0.1" in r.stdout.splitlines()
    assert "app-new: bundle update" not in r.stdout


def test_outdated_json(app_registry: Registry, stack_project: StackProject) -> None:
    digest = app_registry.pushed[f"{APP}:1.2.0"].digest
    stack_project.write_stack(
        "app1", {**APP_STACK, "by-digest": {"image": f"{REGISTRY}/{APP}", "digest": digest}}
    )
    r = stack_project.run("outdated", "app1", "--json", env=mirror_env(reg_address(app_registry)))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["service"] for row in rows] == ["app", "app-alpine", "app-new", "by-digest"]
    assert rows[0] == {
        "host": "app1",
        "service": "app",
        "image": f"{REGISTRY}/{APP}",
        "pinned": "1.2.0",
        "newest_in_major": "1.3.0",
        "newest": "2.0.1",
        "behind_in_major": True,
        "behind": True,
        "moving": False,
        "note": None,
        "error": None,
        "update": "1.3.0",  # what `bundle update` raises it to
        "update_major": "2.0.1",  # and `bundle update --major`
    }
    assert (rows[2]["behind"], rows[2]["newest"]) == (False, "2.0.1")
    assert (rows[2]["update"], rows[3]["update"], rows[3]["update_major"]) == (None, None, None)
    # a digest has no tag to compare with; the newest plain release is shown as a hint
    assert rows[3]["pinned"] == f"@{digest}"
    assert (rows[3]["newest_in_major"], rows[3]["newest"]) == (None, "2.0.1")
    assert "pinned by digest" in rows[3]["note"]


def test_same_image_is_asked_once(app_registry: Registry, stack_project: StackProject) -> None:
    stack_project.write_stack("app1", APP_STACK)
    stack_project.write_stack("app2", {"web": {"image": f"{REGISTRY}/{APP}", "version": "1.3.0"}})
    mirrors = {REGISTRY: f"http://{reg_address(app_registry)}"}
    client = RegistryClient()
    asked: list[str] = []

    def list_tags(image: str) -> list[str]:
        asked.append(image)
        return client.tags(locate(image, mirrors, set()))

    paths = Paths(stack_project.stacks, stack_project.bundles)
    rows = check_hosts(paths, ["app1", "app2"], list_tags)
    assert asked == [f"{REGISTRY}/{APP}"]
    assert [(r.host, r.service, r.newest) for r in rows] == [
        ("app1", "app", "2.0.1"),
        ("app1", "app-alpine", "1.4.0-alpine"),
        ("app1", "app-new", "2.0.1"),
        ("app2", "web", "2.0.1"),
    ]


def test_several_hosts_get_a_host_column(
    app_registry: Registry, stack_project: StackProject
) -> None:
    stack_project.write_stack("app1", APP_STACK)
    stack_project.write_stack("app2", {"web": {"image": f"{REGISTRY}/{APP}", "version": "1.3.0"}})
    r = stack_project.run("outdated", "app1", "app2", env=mirror_env(reg_address(app_registry)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["HOST", "SERVICE"]
    assert any(
        line.split()[:4] == ["app2", "web", f"{REGISTRY}/{APP}", "1.3.0"]
        for line in r.stdout.splitlines()
    )


def test_missing_repository_is_one_line_and_the_rest_is_shown(
    app_registry: Registry, stack_project: StackProject
) -> None:
    stack_project.write_stack(
        "app1",
        {
            **APP_STACK,
            "gone": {"image": f"{REGISTRY}/outdated/missing", "version": "1.0.0"},
        },
    )
    r = stack_project.run("outdated", "app1", env=mirror_env(reg_address(app_registry)))
    assert r.returncode == 1
    rows = table(r.stdout)
    assert rows["app"][1:] == ["1.2.0", "1.3.0 *", "2.0.1 *"]
    assert rows["gone"] == [f"{REGISTRY}/outdated/missing", "1.0.0", "?", "?"]
    assert r.stderr.splitlines() == [
        f"error: gone: {REGISTRY} has no repository outdated/missing",
        "error: 1 of 2 images could not be checked",
    ]
    j = stack_project.run("outdated", "app1", "--json", env=mirror_env(reg_address(app_registry)))
    assert j.returncode == 1
    by_service = {row["service"]: row for row in json.loads(j.stdout)}
    assert by_service["gone"]["error"] == f"{REGISTRY} has no repository outdated/missing"
    assert by_service["app"]["error"] is None and by_service["app"]["newest"] == "2.0.1"


def test_unreachable_registry_is_one_line(
    app_registry: Registry, stack_project: StackProject
) -> None:
    with SilentServer() as closed:
        dead = closed.address
    # nothing listens there any more: connection refused
    stack_project.write_stack(
        "app1",
        {
            "app": {"image": f"{REGISTRY}/{APP}", "version": "1.2.0"},
            "db": {"image": "registry.down:5000/lib/db", "version": "1.0.0"},
            "cache": {"image": "registry.down:5000/lib/db", "version": "1.0.0"},
        },
    )
    env = mirror_env(reg_address(app_registry), f"registry.down:5000=http://{dead}")
    r = stack_project.run("outdated", "app1", env=env)
    assert r.returncode == 1
    assert table(r.stdout)["app"][1:] == ["1.2.0", "1.3.0 *", "2.0.1 *"]
    assert r.stderr.splitlines() == [
        f"error: db, cache: registry.down:5000 (at {dead}) is unreachable: connection refused",
        "error: 1 of 2 images could not be checked",
    ]


def test_plain_http_registry_must_be_marked_insecure(
    app_registry: Registry, stack_project: StackProject
) -> None:
    stack_project.write_stack("app1", {"app": APP_STACK["app"]})
    address = reg_address(app_registry)
    r = stack_project.run(
        "outdated", "app1", env={"BUNDLE_REGISTRY_MIRRORS": f"{REGISTRY}={address}"}
    )
    assert r.returncode == 1
    assert f"error: app: {REGISTRY} (at {address}): TLS failed" in r.stderr
    assert "BUNDLE_INSECURE_REGISTRIES" in r.stderr
    env = {
        "BUNDLE_REGISTRY_MIRRORS": f"{REGISTRY}={address}",
        "BUNDLE_INSECURE_REGISTRIES": REGISTRY,
    }
    r = stack_project.run("outdated", "app1", env=env)
    assert r.returncode == 0, r.stderr
    assert table(r.stdout)["app"][1:] == ["1.2.0", "1.3.0 *", "2.0.1 *"]


def test_anonymous_token_flow(token_registry: TokenRegistry, stack_project: StackProject) -> None:
    """The registry answers 401 + Bearer challenge; outdated fetches a token and asks again."""
    stack_project.write_stack(
        "app1",
        {
            **APP_STACK,
            "secret": {"image": f"{REGISTRY}/outdated/private", "version": "1.0.0"},
        },
    )
    before = len(token_registry.tokens.requests)
    r = stack_project.run("outdated", "app1", env=mirror_env(token_registry.address))
    assert r.returncode == 1
    rows = table(r.stdout)
    assert rows["app"][1:] == ["1.2.0", "1.3.0 *", "2.0.1 *"]
    assert rows["app-alpine"][1:] == ["1.4.0-alpine"] * 3
    assert r.stderr.splitlines() == [
        f"error: secret: {REGISTRY} refused access to outdated/private with an anonymous "
        f"token: the repository does not exist or is private (podman login {REGISTRY})",
        "error: 1 of 2 images could not be checked",
    ]
    scopes = sorted(q["scope"] for q in token_registry.tokens.requests[before:])
    assert scopes == ["repository:outdated/app:pull", "repository:outdated/private:pull"]
