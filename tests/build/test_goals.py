"""`--test` and `--boot` ask the generation's own switcher for them: one whose switcher predates
them is refused with one line (exit 2) before anything is sent; a --boot activation is never
detached (nothing running changes, so there is no dead-man)."""

from __future__ import annotations

from types import MappingProxyType, SimpleNamespace

import pytest

from activate.manifest_format import Manifest
from activate.protocol import Goal
from activate.safety import Safety
from builder.base.errors import BundleError
from builder.bundle.build import switcher_files
from builder.deploy.deployer import switcher_options

SERVER = SimpleNamespace(host="web1", root="/")


def manifest(without: str = "") -> Manifest:
    files = {p: None for p in switcher_files() if p != without}
    return Manifest(
        generation=4,
        parent=3,
        host="web1",
        built_at="",
        state_dir="/var/lib/bundle",
        switcher="",
        requires=MappingProxyType({}),
        files=MappingProxyType(files),  # type: ignore[arg-type]
        units=MappingProxyType({}),
        images=MappingProxyType({}),
    )


@pytest.mark.parametrize("goal", [Goal.TEST, Goal.BOOT])
def test_a_switcher_without_goals_is_refused_with_one_line(goal: Goal) -> None:
    with pytest.raises(BundleError) as caught:
        switcher_options(Safety(goal=goal), SERVER, manifest(without="activate/bootgen.py"))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "web1: the switcher of generation 4 predates --test and --boot; build a new generation "
        "(`bundle switch` builds one) and use it"
    )
    assert caught.value.exit_code == 2
    # the same generation still switches as before
    assert switcher_options(Safety(), SERVER, manifest(without="activate/bootgen.py"))  # type: ignore[arg-type]


def test_the_goal_reaches_the_switcher_and_a_boot_is_not_detached() -> None:
    m = manifest()
    assert switcher_options(Safety(goal=Goal.BOOT), SERVER, m) == ["--goal", "boot"]  # type: ignore[arg-type]
    test = switcher_options(Safety(goal=Goal.TEST), SERVER, m)  # type: ignore[arg-type]
    assert test[:2] == ["--goal", "test"] and "--detach" in test
