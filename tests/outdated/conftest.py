"""Fixtures for `bundle outdated`: the session's real registry holding tags pushed here.

* `app_registry` (session): the `registry` fixture with `outdated/app` at APP_TAGS pushed.
* `token_registry` (session): a second docker-registry over the same storage that wants an
  bearer token (tests/outdated/tokenauth.py); `outdated/private` (pushed, 1.0.0) is granted
  only to the login in LOGINS.
* `stack_project` (function): an empty project; `.write_stack(host, images)` writes a stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.build.conftest import Project
from tests.harness import Registry
from tests.outdated.tokenauth import TokenRegistry

APP = "outdated/app"
APP_TAGS = ("1.2.0", "1.2.3", "1.3.0", "2.0.1", "2.1.0-rc1", "1.4.0-alpine")
REGISTRY = "registry.test:5000"
PRIVATE = "outdated/private"  # token_registry grants it only to a login in LOGINS
LOGINS = {"alice": "correct horse"}


@pytest.fixture(scope="session")
def app_registry(registry: Registry) -> Registry:
    for tag in APP_TAGS:
        registry.push_busybox(APP, tag)
    return registry


@pytest.fixture(scope="session")
def token_registry(app_registry: Registry) -> Iterator[TokenRegistry]:
    app_registry.push_busybox(PRIVATE, "1.0.0")
    reg = TokenRegistry(app_registry.workdir / "storage", private={PRIVATE}, logins=LOGINS)
    try:
        yield reg
    finally:
        reg.stop()


class StackProject(Project):
    def write_stack(self, host: str, containers: dict[str, dict[str, str]]) -> None:
        lines = ["[host]", f'name = "{host}"', f'address = "{host}.example.org"', ""]
        for name, keys in containers.items():
            lines.append(f"[containers.{name}]")
            lines += [f'{k} = "{v}"' for k, v in keys.items()]
            lines.append("")
        self.write(f"{host}.toml", "\n".join(lines))


@pytest.fixture
def stack_project(tmp_path: Path) -> StackProject:
    root = tmp_path / "project"
    (root / "stacks" / "templates").mkdir(parents=True)
    return StackProject(root)
