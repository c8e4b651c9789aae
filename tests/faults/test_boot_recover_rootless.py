"""A rootless host that loses power in the middle of a switch comes back on one whole
generation by itself: the user's own bundle-recover.service (activate/boot.py, in
~/.config/systemd/user) repairs it when the user's manager starts at boot (lingering), before
any of the user's generation units starts, with no bundle command run.

The server is prepared as tests/server/test_rootless.py does (a user, lingering, its key).
Each point runs the body of test_boot_recover.py (tests/faults/managers.py) with the user's
manager: the power is cut while the switcher (running as the user) waits at a step of its
journal, the server boots, the user's manager settles, and then the server is read over plain
SSH: no journal left, `current` names one generation, the user's quadlet files, the containers
the user runs and the page served are all that generation's, and history records the repair.
Then `bundle status` must agree and the next `bundle switch` must work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import BOOT_UNIT, Lab
from tests.faults.managers import (
    UserManager,
    containers,
    power_cut_mid_switch_is_repaired_at_boot,
    sh,
    the_unit_is_installed_before_the_units,
)
from tests.harness import Target
from tests.server.test_rootless import USER, prepare_user, rootless_project

HOME = f"/home/{USER}"
USER_MANAGER = UserManager(
    state=f"{HOME}/.local/state/bundle",
    quadlet=f"{HOME}/.config/containers/systemd",
    units=f"{HOME}/.config/systemd/user",
    user=USER,
)


@pytest.fixture(scope="module")
def lab(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prepare_user(target)
    p = rootless_project(tmp_path_factory.mktemp("boot-rootless"), target)
    lab = Lab(p, host=f'ssh_user = "{USER}"\nrootless = true\n', state=USER_MANAGER.state)
    lab.next_stack("the first generation")
    p.ok("switch", "web1")
    lab.running = 1
    yield lab


def test_the_unit_is_the_users_enabled_and_orders_before_its_units(lab: Lab) -> None:
    the_unit_is_installed_before_the_units(lab, USER_MANAGER)
    unit = sh(lab, f"cat {USER_MANAGER.units}/{BOOT_UNIT}")
    assert "WantedBy=default.target" in unit
    assert sh(lab, f"test -e /etc/systemd/system/{BOOT_UNIT} || echo none") == "none"
    # the user manager orders its quadlet services after its basic.target, as the system does
    for service in sorted(f"{name}.service" for name in containers(lab, lab.running)):
        after = USER_MANAGER.show(lab, service, "After")["After"].split()
        assert "basic.target" in after, (service, after)


POINTS = [
    ("switch-starting", "old", "the new units loaded and the first one restarted"),
    ("switch-done", "new", "every change made, the history line not yet written"),
]


@pytest.mark.parametrize(("point", "ends_on", "why"), POINTS, ids=[p[0] for p in POINTS])
def test_power_cut_mid_switch_is_repaired_by_the_users_manager_at_boot(
    lab: Lab, point: str, ends_on: str, why: str
) -> None:
    power_cut_mid_switch_is_repaired_at_boot(lab, USER_MANAGER, point, ends_on, why)
