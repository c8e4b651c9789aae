"""The managed-services path (--services systemd) against stand-in systemctl/podman/quadlet.

The stand-ins (fake_tools.py) only check the order of calls and the way back after a failure;
real systemd and podman are exercised by the tests against the real test server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from activate.errors import Failed
from activate.systemd import Systemd

from .conftest import Run, calls, n_calls, raw_calls, services, web_stack
from .switcherkit import Bundle, U, finish, push


def starts_of(fake: dict[str, str], service: str) -> int:
    """`systemctl start` calls that name `service` (alone or with its dependency level)."""
    return sum(1 for c in calls(fake) if c.startswith("systemctl start") and service in c.split())


def current_generation(state: Path) -> int:
    return int(os.readlink(state / "current").split("/")[-1].split("-")[0])


def test_first_activation_checks_pulls_reloads_and_starts_in_order(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1")

    assert r.rc == 0, r
    assert r.data["services"] == "managed"
    assert r.data["pulled"] == ["docker.io/library/nginx:1.27.3"]
    assert r.data["server"]["podman"] == "5.4.2"
    assert calls(fake) == [
        "podman --version",
        "quadlet -dryrun",
        "podman image exists docker.io/library/nginx:1.27.3",
        "podman pull docker.io/library/nginx:1.27.3",
        "systemctl daemon-reload",
        "systemctl start -- web-data-volume.service",
        "systemctl start -- backup.timer web.service",  # one call per dependency level
        "systemctl enable -- backup.timer",
    ]
    assert sorted(services(fake)["active"]) == [
        "backup.timer",
        "web-data-volume.service",
        "web.service",
    ]

    status = run("status")
    assert status.data["units"]["web.container"]["active"] == "active"
    assert status.data["units"]["backup.service"]["active"] == "inactive"


def test_next_generation_restarts_only_what_changed_and_stops_removed_units_first(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    second = web_stack(2, state, index=b"v2\n")
    for key in ("backup.timer", "backup.service"):
        del second.manifest["units"][key]
    assert push(finish(second), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    assert calls(fake, before) == [
        "podman --version",
        "quadlet -dryrun",
        # no `podman image exists`: the running web container holds its image
        "systemctl disable -- backup.timer",
        "systemctl stop -- backup.timer",
        "systemctl stop -- backup.service",
        "systemctl daemon-reload",
        "systemctl restart -- web.service",
    ]


def test_an_image_no_running_container_holds_is_looked_for_before_the_switch(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    # web stopped by hand, and its image removed: nothing holds the image any more
    stand_in = services(fake)
    stand_in["active"].remove("web.service")
    stand_in["images"].remove("docker.io/library/nginx:1.27.3")
    Path(fake["FAKE_STATE"]).write_text(json.dumps(stand_in))
    assert push(finish(web_stack(2, state, index=b"v2\n")), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    assert r.data["pulled"] == ["docker.io/library/nginx:1.27.3"]
    assert calls(fake, before)[2:4] == [
        "podman image exists docker.io/library/nginx:1.27.3",
        "podman pull docker.io/library/nginx:1.27.3",
    ]


def test_failed_start_puts_the_old_generation_back(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    first = web_stack(1, state)
    assert push(first, state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    # api starts after web (depends on it), so web is already restarted when api fails.
    api = U(
        "[Container]\nImage=docker.io/library/api:1\n",
        image="docker.io/library/api:1",
        requires=("web.container",),
    )
    assert (
        push(web_stack(2, state, index=b"v2\n", extra={"api.container": api}), state, root).rc == 0
    )
    before = n_calls(fake)

    r = run("activate", "--generation", "2", env={"FAKE_FAIL_START": "api.service"})

    assert r.rc == 1, r
    assert r.stderr.startswith(
        "activate: rolled back to generation 1: activating generation 2 failed"
    )
    assert "api.service" in r.stderr and "journalctl -u api.service" in r.stderr
    assert r.data["result"] == "rolled back"
    assert current_generation(state) == 1
    assert not (root / "etc/containers/systemd/api.container").exists()
    assert (state / "current/files/web/index.html").read_bytes() == b"hello\n"
    done = calls(fake, before)
    assert done[done.index("systemctl restart -- web.service") :] == [
        "systemctl restart -- web.service",
        "systemctl start -- api.service",
        "systemctl stop -- api.service",
        "systemctl daemon-reload",
        "systemctl restart -- web.service",
        "systemctl enable -- backup.timer",
    ]
    assert "web.service" in services(fake)["active"]
    last = json.loads((state / "history.jsonl").read_text().splitlines()[-1])
    assert (last["from"], last["to"], last["result"]) == (1, 2, "rolled back")
    assert not (state / "pending.json").exists()


def test_a_unit_left_failed_by_a_crash_loop_is_reset_before_it_is_started(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_START_LIMITED": "web.service"})

    assert r.rc == 0, r
    assert "web.service" in services(fake)["active"]
    done = [c for c in raw_calls(fake) if not c.startswith("systemctl show")]
    starts = [i for i, c in enumerate(done) if c.startswith("systemctl start")]
    assert starts and all(done[i - 1] == done[i].replace("start", "reset-failed") for i in starts)


def test_a_start_canceled_by_another_job_is_tried_once_more(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_CANCEL": "web.service=1"})

    assert r.rc == 0, r
    assert starts_of(fake, "web.service") == 2  # its level's call, then once more alone
    assert "systemctl start -- web.service" in calls(fake)
    assert "web.service" in services(fake)["active"]


def test_a_start_that_fails_twice_says_so_with_systemds_reason(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_CANCEL": "web.service=5"})

    assert r.rc == 1, r
    assert starts_of(fake, "web.service") == 2
    assert (
        "starting web.service failed, twice (exit 1: Job for web.service canceled.; the unit is "
        "inactive); see `journalctl -u web.service`"
    ) in r.stderr, r.stderr


def test_failed_first_activation_leaves_no_generation_active(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_FAIL_START": "web.service"})

    assert r.rc == 1, r
    assert r.stderr.startswith("activate: rolled back to no generation")
    assert not (state / "current").exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []
    assert services(fake)["active"] == []
    assert services(fake)["enabled"] == []


def test_unit_systemd_cannot_load_rolls_back(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    broken = U("[Service]\nExecStart=/bin/true\n# BROKEN\n")
    assert push(web_stack(2, state, extra={"odd.service": broken}), state, root).rc == 0

    r = run("activate", "--generation", "2")

    assert r.rc == 1, r
    assert "rolled back to generation 1" in r.stderr
    assert "systemd does not know odd.service (not-found)" in r.stderr
    assert current_generation(state) == 1
    assert not (root / "etc/systemd/system/odd.service").exists()


def test_quadlet_refusal_stops_before_anything_changes(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    bad = U("[Container]\nImage=x\nBADKEY=1\n", image="x")
    assert push(web_stack(2, state, extra={"bad.container": bad}), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 1, r
    assert "quadlet generator refuses the new units" in r.stderr
    assert "unsupported key 'BADKEY'" in r.stderr
    assert calls(fake, before) == ["podman --version", "quadlet -dryrun"]
    assert current_generation(state) == 1
    assert "rolled back" not in r.stderr


def test_podman_too_old_for_pods_is_refused(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state, extra={"app.pod": U("[Pod]\n")}), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_PODMAN_VERSION": "4.9.3"})

    assert r.rc == 1, r
    assert "podman 4.9.3 is too old" in r.stderr and "5.0" in r.stderr
    assert not (state / "current").exists()


def test_changed_network_is_removed_while_its_users_are_down(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    def stack(n: int, subnet: str) -> Bundle:
        return web_stack(
            n,
            state,
            extra={
                "front.network": U(f"[Network]\nSubnet={subnet}\n"),
                "api.container": U(
                    "[Container]\nImage=api\nNetwork=front.network\n",
                    requires=("front.network",),
                    image="api",
                ),
            },
        )

    assert push(stack(1, "10.1.0.0/24"), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    assert push(stack(2, "10.2.0.0/24"), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    assert r.data["plan"]["networks"] == ["front.network"]
    assert [c for c in calls(fake, before) if "front" in c or "api" in c] == [
        "systemctl stop -- api.service",  # its image is held by its running container
        "systemctl stop -- front-network.service",
        "podman network exists systemd-front",
        "podman network rm -- systemd-front",
        "systemctl start -- front-network.service",
        "systemctl start -- api.service",
    ]


def test_managed_services_need_the_state_dir_the_units_were_built_for(
    run: Run, state: Path, root: Path, tmp_path: Path
) -> None:
    assert push(web_stack(1, tmp_path / "elsewhere"), state, root).rc == 0

    r = run("activate", "--generation", "1")

    assert r.rc == 2, r
    assert "state_dir" in r.stderr


def test_reactivating_starts_units_that_died(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    fake_state = services(fake)
    fake_state["active"].remove("web.service")
    fake_state["failed"].append("web.service")
    Path(fake["FAKE_STATE"]).write_text(json.dumps(fake_state))

    r = run("activate", "--generation", "1")

    assert r.rc == 0, r
    assert r.data["plan"]["start"] == ["web.container"]
    assert r.data["plan"]["reasons"]["web.container"] == "unchanged but failed"


def test_a_generation_that_changes_no_unit_reloads_nothing_restarts_nothing_and_has_no_window(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    assert push(web_stack(2, state), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    done = calls(fake, before)
    assert "systemctl daemon-reload" not in done
    assert not [c for c in done if c.split()[1:2] in (["start"], ["restart"], ["stop"])], done
    assert r.data["unchanged"] == "nothing to restart: no health window, no confirmation"
    assert r.data["health"]["passed"] and r.data["health"]["settle"] == 0
    assert current_generation(state) == 2


def test_a_changed_config_file_restarts_its_unit_without_a_reload_and_keeps_the_window(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    assert push(web_stack(2, state, index=b"v2\n"), state, root).rc == 0
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    done = calls(fake, before)
    assert "systemctl daemon-reload" not in done  # no unit file changed: systemd's view holds
    assert "systemctl restart -- web.service" in done
    assert "unchanged" not in r.data  # a restart is gated as before


def test_units_systemd_has_not_loaded_are_reloaded_though_no_file_changed(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0
    assert run("activate", "--generation", "1").rc == 0
    assert push(web_stack(2, state), state, root).rc == 0
    known = services(fake)
    known["loaded"] = []  # the files are on disk, but systemd never read them (a crash)
    Path(fake["FAKE_STATE"]).write_text(json.dumps(known))
    before = n_calls(fake)

    r = run("activate", "--generation", "2")

    assert r.rc == 0, r
    assert "systemctl daemon-reload" in calls(fake, before)


def test_a_unit_failing_in_its_levels_call_is_named_alone_and_nothing_stays(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    assert push(web_stack(1, state), state, root).rc == 0

    r = run("activate", "--generation", "1", env={"FAKE_FAIL_START": "web.service"})

    assert r.rc == 1, r
    assert "systemctl start -- backup.timer web.service" in calls(fake)
    cause = r.stderr.split("activating generation 1 failed: ", 1)[1]
    assert cause.startswith("web.service stopped"), r.stderr
    assert "backup.timer" not in cause
    assert r.data["result"] == "rolled back"
    assert services(fake)["active"] == []


def test_missing_images_are_pulled_at_once_and_a_failing_one_is_named(
    fake: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in fake.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FAKE_FAIL_PULL", "example.org/gone:1")
    images = ["example.org/a:1", "example.org/gone:1", "example.org/b:1", "example.org/c:1"]

    with pytest.raises(Failed) as failed:
        Systemd().pull_missing(images)

    assert failed.value.message.startswith("pulling example.org/gone:1 failed (exit 125: ")
    assert "manifest unknown" in failed.value.message
    pulled = [c for c in calls(fake) if c.startswith("podman pull")]
    assert sorted(pulled) == sorted(f"podman pull {i}" for i in images)
    assert sorted(services(fake)["images"]) == [
        "example.org/a:1",
        "example.org/b:1",
        "example.org/c:1",
    ]
