"""builder/images/registry.py: image names, challenges, pages, failures (loopback only)."""

from __future__ import annotations

import socket

import pytest

from builder.base.errors import BundleError
from builder.images.registry import (
    Location,
    RegistryClient,
    RegistryProblem,
    insecure_from_env,
    locate,
    mirrors_from_env,
    next_link,
    parse_challenge,
    split_image,
)
from tests.harness import Registry
from tests.outdated.conftest import APP, APP_TAGS, REGISTRY
from tests.outdated.loopback import PagingProxy, PlainHTTP, SilentServer
from tests.outdated.tokenauth import TokenRegistry

# ---- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "registry", "repository"),
    [
        ("nginx", "docker.io", "library/nginx"),
        ("docker.io/library/nginx", "docker.io", "library/nginx"),
        ("docker.io/nextcloud", "docker.io", "library/nextcloud"),
        ("index.docker.io/grafana/grafana", "docker.io", "grafana/grafana"),
        ("matrixdotorg/synapse", "docker.io", "matrixdotorg/synapse"),
        ("quay.io/prometheus/node-exporter", "quay.io", "prometheus/node-exporter"),
        ("ghcr.io/goauthentik/server", "ghcr.io", "goauthentik/server"),
        ("registry.test:5000/bundle/app", "registry.test:5000", "bundle/app"),
        ("localhost/me/app", "localhost", "me/app"),
        ("localhost:5000/app", "localhost:5000", "app"),
        ("Registry.Example.org/a/b/c", "registry.example.org", "a/b/c"),
    ],
)
def test_split_image(image: str, registry: str, repository: str) -> None:
    assert split_image(image) == (registry, repository)


def test_locate_defaults_to_https_and_docker_hub_api() -> None:
    assert locate("docker.io/library/nginx", {}, set()) == Location(
        "docker.io", "library/nginx", "https://registry-1.docker.io"
    )
    assert locate("quay.io/prometheus/prometheus", {}, set()).base_url == "https://quay.io"
    assert locate("ghcr.io/goauthentik/server", {}, set()).base_url == "https://ghcr.io"


def test_locate_insecure_and_mirrors() -> None:
    assert locate(f"{REGISTRY}/x", {}, {REGISTRY}).base_url == f"http://{REGISTRY}"
    mirrors = {REGISTRY: "127.0.0.1:4000"}
    assert locate(f"{REGISTRY}/x", mirrors, set()).base_url == "https://127.0.0.1:4000"
    assert locate(f"{REGISTRY}/x", mirrors, {REGISTRY}).base_url == "http://127.0.0.1:4000"
    assert locate(f"{REGISTRY}/x", mirrors, {"127.0.0.1:4000"}).base_url == "http://127.0.0.1:4000"
    scheme = {REGISTRY: "http://127.0.0.1:4000/"}
    assert locate(f"{REGISTRY}/x", scheme, set()).base_url == "http://127.0.0.1:4000"
    hub = locate("nginx", {"docker.io": "http://127.0.0.1:4001"}, set())
    assert (hub.base_url, hub.repository) == ("http://127.0.0.1:4001", "library/nginx")


def test_environment_settings() -> None:
    env = {
        "BUNDLE_REGISTRY_MIRRORS": "registry.test:5000=127.0.0.1:1, docker.io=http://127.0.0.1:2",
        "BUNDLE_INSECURE_REGISTRIES": "Registry.Test:5000 127.0.0.1:1",
    }
    assert mirrors_from_env(env) == {
        "registry.test:5000": "127.0.0.1:1",
        "docker.io": "http://127.0.0.1:2",
    }
    assert insecure_from_env(env) == {"registry.test:5000", "127.0.0.1:1"}
    assert mirrors_from_env({}) == {} and insecure_from_env({}) == set()
    with pytest.raises(BundleError, match="is not NAME=ADDRESS") as e:
        mirrors_from_env({"BUNDLE_REGISTRY_MIRRORS": "registry.test:5000"})
    assert e.value.exit_code == 2


# ---- protocol pieces ------------------------------------------------------------------


def test_parse_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert parse_challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/nginx:pull",
        },
    )
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge("Bearer realm=https://x/token, service=x") == (
        "bearer",
        {"realm": "https://x/token", "service": "x"},
    )


def test_next_link() -> None:
    assert next_link('</v2/a/tags/list?n=2&last=b>; rel="next"') == "/v2/a/tags/list?n=2&last=b"
    assert (
        next_link("<https://x/v2/a/tags/list?last=b>; rel=next")
        == "https://x/v2/a/tags/list?last=b"
    )
    assert next_link('</x>; rel="prev"') is None
    assert next_link(None) is None and next_link("") is None


# ---- pages and tokens, against the real registry ----------------------------------------


def test_all_pages_are_read(app_registry: Registry) -> None:
    with PagingProxy(app_registry.url) as proxy:
        where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{proxy.address}"}, set())
        tags = RegistryClient(page_size=2).tags(where)
    assert sorted(tags) == sorted(set(app_registry.tags(APP)))
    assert set(APP_TAGS) <= set(tags)
    assert len(proxy.pages) == -(-len(tags) // 2)  # every page asked once
    assert proxy.pages[0] == f"/v2/{APP}/tags/list?n=2"
    assert all("last=" in page for page in proxy.pages[1:])


def test_pages_behind_a_token_reuse_one_token(token_registry: TokenRegistry) -> None:
    with PagingProxy(f"http://{token_registry.address}") as proxy:
        before = len(token_registry.tokens.requests)
        where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{proxy.address}"}, set())
        tags = RegistryClient(page_size=2).tags(where)
    assert set(APP_TAGS) <= set(tags)
    assert len(proxy.pages) >= 3
    assert [q["scope"] for q in token_registry.tokens.requests[before:]] == [
        f"repository:{APP}:pull"
    ]


# ---- failures -------------------------------------------------------------------------


def test_silent_registry_times_out() -> None:
    with SilentServer() as silent:
        where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{silent.address}"}, set())
        with pytest.raises(RegistryProblem) as e:
            RegistryClient(timeout=0.5).tags(where)
    assert str(e.value) == f"{REGISTRY} (at {silent.address}) did not answer within 0.5 s"


def test_registry_that_wants_a_login() -> None:
    for headers in ({"WWW-Authenticate": 'Basic realm="Registry Realm"'}, {}):
        with PlainHTTP(status=401, body=b"{}", headers=headers) as server:
            where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{server.address}"}, set())
            with pytest.raises(RegistryProblem) as e:
                RegistryClient().tags(where)
        assert "wants a login" in str(e.value)
        assert f"podman login {REGISTRY}, or set REGISTRY_AUTH_FILE" in str(e.value)


def test_token_server_refusing() -> None:
    with PlainHTTP(status=401, body=b"{}") as auth:
        challenge = f'Bearer realm="http://{auth.address}/token",service="s"'
        with PlainHTTP(status=401, body=b"{}", headers={"WWW-Authenticate": challenge}) as reg:
            where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{reg.address}"}, set())
            with pytest.raises(RegistryProblem) as e:
                RegistryClient().tags(where)
    assert str(e.value) == (
        f"{REGISTRY}: the token server {auth.address} refused an anonymous token for {APP} (HTTP 401)"
    )


def test_server_error_and_nonsense() -> None:
    with PlainHTTP(status=500, body=b'{"errors": [{"code": "UNKNOWN", "message": "boom"}]}') as s:
        where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{s.address}"}, set())
        with pytest.raises(RegistryProblem) as e:
            RegistryClient().tags(where)
    assert str(e.value) == f"{REGISTRY} answered HTTP 500 for {APP}: boom"
    with PlainHTTP(status=200, body=b"<html>") as s:
        where = locate(f"{REGISTRY}/{APP}", {REGISTRY: f"http://{s.address}"}, set())
        with pytest.raises(RegistryProblem, match="not valid JSON"):
            RegistryClient().tags(where)


def test_unknown_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # no name is looked up for real: the resolver is replaced by one that knows nothing
    def unknown(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    where = locate("registry.invalid/x/y", {}, {"registry.invalid"})
    with pytest.raises(RegistryProblem) as e:
        RegistryClient(timeout=5).tags(where)
    assert str(e.value) == "registry.invalid is unreachable: unknown host name"
