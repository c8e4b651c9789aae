"""Fixtures for the real test server (see docs/testing.md).

* `quadlet_bin` (session): Path of podman 5.4's quadlet generator, for host-side dry runs:
  `QUADLET_UNIT_DIRS=D quadlet_bin -dryrun`.
* `registry` (session): a running docker-registry holding `bundle/web:1.0.0` and
  `bundle/web:1.1.0`; targets pull them as `registry.test:5000/bundle/web:TAG`.
  `registry.push_busybox(repo, tag, extra_files)` pushes more.
* `target` (module): one booted server shared by the tests of a module, torn down after it.
* `target_factory` (function): `target_factory()` boots another fresh server; all of them are
  torn down after the test.

Tests using `target`/`target_factory` get the `target` marker and tests using `quadlet_bin`
the `quadlet` marker automatically. When this machine cannot run the server (not root, tools
missing) these fixtures fail with the reason; they never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import (
    HarnessError,
    Registry,
    RegistryError,
    Target,
    host_problems,
    quadlet_binary,
)

WEB_TAGS = ("1.0.0", "1.1.0")


def _require_host() -> None:
    problems = host_problems()
    if problems:
        pytest.fail(
            "this machine cannot run the real test server:\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"target", "target_factory"}:
            item.add_marker(pytest.mark.target)
        if "quadlet_bin" in names:
            item.add_marker(pytest.mark.quadlet)


@pytest.fixture(scope="session")
def quadlet_bin() -> Path:
    _require_host()
    try:
        return quadlet_binary()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    _require_host()
    try:
        reg = Registry.start()
    except RegistryError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        for tag in WEB_TAGS:
            reg.push_busybox("bundle/web", tag)
        yield reg
    finally:
        reg.stop()


def _boot(registry: Registry) -> Target:
    target = Target(registry=registry)
    try:
        target.up()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    return target


@pytest.fixture(scope="module")
def target(registry: Registry) -> Iterator[Target]:
    t = _boot(registry)
    try:
        yield t
    finally:
        t.down()


@pytest.fixture
def target_factory(registry: Registry) -> Iterator[Callable[[], Target]]:
    made: list[Target] = []

    def make() -> Target:
        t = _boot(registry)
        made.append(t)
        return t

    try:
        yield make
    finally:
        errors = []
        for t in reversed(made):
            try:
                t.down()
            except HarnessError as e:
                errors.append(str(e))
        if errors:
            raise HarnessError("\n".join(errors))


@pytest.fixture(scope="module")
def forgiving_sshd(target: Target) -> Target:
    """The module's server without OpenSSH 10's PerSourcePenalties.

    These tests fail logins on purpose; sshd would otherwise shut our address out for a while
    and the next test would see a hang-up instead of what it tests.
    """
    target.write_file("/etc/ssh/sshd_config.d/60-no-penalties.conf", "PerSourcePenalties no\n")
    # restart, not reload: reload returns before sshd listens again, restart waits (Type=notify)
    target.ssh("sshd -t && systemctl restart ssh")
    return target
