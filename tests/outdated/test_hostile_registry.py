"""A registry that sends hostile answers: one line naming it, never a traceback.

Each answer comes from a small HTTP server on 127.0.0.1 started here. Before, a tag list
nested a hundred thousand deep ended `bundle outdated` in a RecursionError traceback, an
error body did the same, a token with a line break crashed the next request, and a tag with
terminal escapes was printed as it came.
"""

from __future__ import annotations

import pytest

from builder.images.registry import MAX_BODY, RegistryClient, RegistryProblem, locate
from tests.outdated.conftest import APP, REGISTRY, StackProject
from tests.outdated.loopback import PlainHTTP

SAID = f"{REGISTRY} sent a tag list for {APP}"
DEEP = b'{"tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

TAG_LISTS = {
    "deep-nesting": (DEEP, f"{SAID}: not valid JSON: nested deeper than 64 levels"),
    "duplicate-key": (
        b'{"tags": ["1.0.0"], "tags": ["9.9.9"]}',
        f"{SAID}: not valid JSON: the key 'tags' appears twice in one object",
    ),
    "huge-integer": (
        b'{"n": ' + b"9" * 5000 + b', "tags": []}',
        f"{SAID}: not valid JSON: an integer longer than 19 digits",
    ),
    "nan": (b'{"tags": [NaN]}', f"{SAID}: not valid JSON: NaN (not JSON)"),
    "list-at-top": (b'["1.0.0"]', f"{SAID}: expected a JSON object, got a JSON list"),
    "tags-not-strings": (
        b'{"tags": [1, {"a": 2}]}',
        f'{SAID}: its "tags" are not a list of strings',
    ),
    "terminal-escape": (
        b'{"tags": ["1.0.0\\u001b]0;owned\\u0007"]}',
        f"{SAID}: '1.0.0?]0;owned?' is not a tag name",
    ),
}


def client_against(server: PlainHTTP) -> tuple[RegistryClient, object]:
    return RegistryClient(timeout=30), locate(
        f"{REGISTRY}/{APP}", {REGISTRY: f"http://{server.address}"}, set()
    )


@pytest.mark.parametrize("body, message", TAG_LISTS.values(), ids=TAG_LISTS.keys())
def test_a_hostile_tag_list_is_one_line(body: bytes, message: str) -> None:
    with PlainHTTP(status=200, body=body) as server:
        client, where = client_against(server)
        with pytest.raises(RegistryProblem) as e:
            client.tags(where)  # type: ignore[arg-type]
    assert str(e.value) == message


def test_an_endless_answer_is_cut_off() -> None:
    with PlainHTTP(status=200, body=b" " * (MAX_BODY + 1)) as server:
        client, where = client_against(server)
        with pytest.raises(RegistryProblem) as e:
            client.tags(where)  # type: ignore[arg-type]
    assert str(e.value) == f"{REGISTRY} (at {server.address}) sent an answer over 16 MiB"


def test_a_hostile_error_body_still_gives_the_status() -> None:
    with PlainHTTP(status=500, body=DEEP) as server:
        client, where = client_against(server)
        with pytest.raises(RegistryProblem) as e:
            client.tags(where)  # type: ignore[arg-type]
    assert str(e.value) == f"{REGISTRY} answered HTTP 500 for {APP}"
    body = b'{"errors": [{"message": "boom\\nsecond line \\u001b[2J"}]}'
    with PlainHTTP(status=500, body=body) as server:
        client, where = client_against(server)
        with pytest.raises(RegistryProblem) as e:
            client.tags(where)  # type: ignore[arg-type]
    assert str(e.value) == f"{REGISTRY} answered HTTP 500 for {APP}: boom?second line ?[2J"


@pytest.mark.parametrize(
    "body, problem",
    [
        (DEEP, "sent an answer: not valid JSON: nested deeper than 64 levels"),
        (
            b'{"token": "a", "token": "b"}',
            "sent an answer: not valid JSON: the key 'token' appears twice in one object",
        ),
        (b'{"token": "abc\\r\\nX-Injected: 1"}', "sent a token with spaces or control characters"),
        (b'{"token": 12}', "sent no token"),
    ],
    ids=["deep-nesting", "duplicate-key", "header-injection", "not-a-string"],
)
def test_a_hostile_token_server_is_one_line(body: bytes, problem: str) -> None:
    with PlainHTTP(status=200, body=body) as auth:
        challenge = f'Bearer realm="http://{auth.address}/token",service="s"'
        with PlainHTTP(status=401, body=b"{}", headers={"WWW-Authenticate": challenge}) as reg:
            client, where = client_against(reg)
            with pytest.raises(RegistryProblem) as e:
                client.tags(where)  # type: ignore[arg-type]
    assert str(e.value) == f"{REGISTRY}: the token server {auth.address} {problem}"


def test_bundle_outdated_against_a_hostile_registry(stack_project: StackProject) -> None:
    stack_project.write_stack("app1", {"app": {"image": f"{REGISTRY}/{APP}", "version": "1.2.0"}})
    with PlainHTTP(status=200, body=DEEP) as server:
        env = {
            "BUNDLE_REGISTRY_MIRRORS": f"{REGISTRY}={server.address}",
            "BUNDLE_INSECURE_REGISTRIES": f"{REGISTRY},{server.address}",
        }
        r = stack_project.run("outdated", "app1", env=env)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"error: app: {SAID}: not valid JSON: nested deeper than 64 levels",
        "error: 1 of 1 image could not be checked",
    ]
