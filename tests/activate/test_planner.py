"""The planner's rule table (activate/planner.py docstring), one test per rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from activate.manifest import Manifest, manifest_from_dict
from activate.planner import Plan, dependency_order, plan

from .switcherkit import U, make_bundle


def manifest(
    units: Mapping[str, U], files: Mapping[str, bytes] | None = None, n: int = 1
) -> Manifest:
    bundle = make_bundle(n, "/var/lib/bundle", units, files, with_switcher=False)
    return manifest_from_dict(bundle.manifest)


WEB = U("[Container]\nImage=web\n", image="web")
DB = U("[Container]\nImage=db\n", image="db")


def test_unit_only_in_old_is_stopped_and_removed() -> None:
    old = manifest({"web.container": WEB, "db.container": DB})
    new = manifest({"web.container": WEB})

    p = plan(old, new)

    assert p.stop == ("db.container",)
    assert p.remove == ("db.container",)
    assert p.leave == ("web.container",)
    assert p.reasons["db.container"] == "removed"


def test_removed_timer_is_disabled_and_stopped() -> None:
    old = manifest(
        {
            "b.service": U("[Service]\n", enable=False),
            "b.timer": U("[Timer]\n", requires=("b.service",)),
        }
    )
    new = manifest({})

    p = plan(old, new)

    assert p.disable == ("b.timer",)
    assert p.stop == ("b.timer", "b.service")  # dependents first
    assert p.remove == ("b.service", "b.timer")


def test_new_unit_with_enable_is_started() -> None:
    p = plan(manifest({}), manifest({"web.container": WEB}))

    assert p.start == ("web.container",)
    assert p.reasons["web.container"] == "new"


def test_new_timer_is_started_and_enabled_but_its_service_is_never_started() -> None:
    new = manifest(
        {
            "backup.service": U("[Service]\nType=oneshot\n", enable=False),
            "backup.timer": U("[Timer]\nOnCalendar=daily\n", requires=("backup.service",)),
        }
    )

    p = plan(None, new)

    assert p.start == ("backup.timer",)
    assert p.enable == ("backup.timer",)
    assert p.leave == ("backup.service",)
    assert "not started" in p.reasons["backup.service"]


def test_changed_network_stops_dependents_and_recreates_the_network() -> None:
    net1, net2 = U("[Network]\nSubnet=10.1.0.0/24\n"), U("[Network]\nSubnet=10.2.0.0/24\n")
    units = {
        "app.pod": U("[Pod]\nNetwork=front.network\n", requires=("front.network",)),
        "app-api.container": U("[Container]\nImage=api\nPod=app.pod\n", requires=("app.pod",)),
        "web.container": U(
            "[Container]\nImage=web\nNetwork=front.network\n", requires=("front.network",)
        ),
        "db.container": DB,
    }
    old = manifest({**units, "front.network": net1})
    new = manifest({**units, "front.network": net2})

    p = plan(old, new)

    assert p.networks == ("front.network",)
    assert p.stop == ("app-api.container", "web.container", "app.pod", "front.network")
    assert p.start == ("front.network", "app.pod", "web.container", "app-api.container")
    assert p.restart == ()
    assert p.leave == ("db.container",)
    assert "recreated" in p.reasons["web.container"]


def test_unit_turned_off_is_stopped() -> None:
    old = manifest({"web.container": WEB, "t.timer": U("[Timer]\n")})
    new = manifest(
        {
            "web.container": dataclasses.replace(WEB, enable=False),
            "t.timer": U("[Timer]\n", enable=False),
        }
    )

    p = plan(old, new)

    assert p.stop == ("web.container", "t.timer")
    assert p.disable == ("t.timer",)
    assert p.start == p.restart == ()
    assert p.reasons["web.container"] == "enable turned off"


def test_changed_unit_without_enable_is_left_for_its_next_run() -> None:
    old = manifest({"backup.service": U("[Service]\nExecStart=/a\n", enable=False)})
    new = manifest({"backup.service": U("[Service]\nExecStart=/b\n", enable=False)})

    p = plan(old, new)

    assert p.leave == ("backup.service",)
    assert p.changes_nothing
    assert "next time it runs" in p.reasons["backup.service"]


@pytest.mark.parametrize(("changed", "action"), [(False, "start"), (True, "restart")])
def test_unit_turned_on_is_started(changed: bool, action: str) -> None:
    old = manifest({"web.container": dataclasses.replace(WEB, enable=False)})
    text = WEB.text + ("Label=x=1\n" if changed else "")
    new = manifest({"web.container": dataclasses.replace(WEB, text=text)})

    p = plan(old, new)

    assert getattr(p, action) == ("web.container",)
    assert p.reasons["web.container"] == "enable turned on"


def test_changed_volume_is_left_alone() -> None:
    users = {
        "web.container": U(
            "[Container]\nImage=web\nVolume=data.volume:/d\n", requires=("data.volume",)
        )
    }
    old = manifest({**users, "data.volume": U("[Volume]\n")})
    new = manifest({**users, "data.volume": U("[Volume]\nLabel=x=1\n")})

    p = plan(old, new)

    assert p.restart == p.stop == p.start == ()
    assert "does not change an existing volume" in p.reasons["data.volume"]


def test_changed_closure_restarts_the_unit_even_when_only_a_config_file_changed() -> None:
    unit = U("[Container]\nImage=web\n", refs=("files/web/nginx.conf",))
    old = manifest({"web.container": unit, "db.container": DB}, {"files/web/nginx.conf": b"a"})
    new = manifest({"web.container": unit, "db.container": DB}, {"files/web/nginx.conf": b"b"})

    p = plan(old, new)

    assert p.restart == ("web.container",)
    assert p.leave == ("db.container",)
    assert p.reasons["web.container"] == "changed: files/web/nginx.conf"


def test_changed_timer_is_restarted_to_re_arm_it() -> None:
    old = manifest({"t.timer": U("[Timer]\nOnCalendar=daily\n")})
    new = manifest({"t.timer": U("[Timer]\nOnCalendar=hourly\n")})

    assert plan(old, new).restart == ("t.timer",)


def test_unchanged_unit_that_is_not_running_is_started_when_live_state_is_known() -> None:
    both = manifest({"web.container": WEB, "db.container": DB})

    p = plan(both, both, {"web.container": "failed", "db.container": "active"})

    assert p.start == ("web.container",)
    assert p.leave == ("db.container",)
    assert p.reasons["web.container"] == "unchanged but failed"


def test_finished_oneshot_service_is_not_run_again() -> None:
    both = manifest({"migrate.service": U("[Service]\nType=oneshot\n"), "t.timer": U("[Timer]\n")})

    p = plan(both, both, {"migrate.service": "inactive", "t.timer": "inactive"})

    assert p.start == ("t.timer",)
    assert p.leave == ("migrate.service",)
    assert plan(both, both, {"migrate.service": "failed", "t.timer": "active"}).start == (
        "migrate.service",
    )


def test_unchanged_unit_is_left_alone() -> None:
    both = manifest({"web.container": WEB})

    p = plan(both, both)

    assert p == Plan(
        leave=("web.container",),
        order=("web.container",),
        reasons=p.reasons,
        depth=p.depth,
        stop_depth=p.stop_depth,
    )
    assert p.changes_nothing
    assert p.reasons["web.container"] == "unchanged"


def test_restarted_pod_restarts_its_containers_once() -> None:
    pod_old, pod_new = U("[Pod]\n"), U("[Pod]\nPublishPort=8080:80\n")
    a_old = U("[Container]\nImage=a\nPod=app.pod\n", requires=("app.pod",))
    a_new = U("[Container]\nImage=a:2\nPod=app.pod\n", requires=("app.pod",))
    b = U("[Container]\nImage=b\nPod=app.pod\n", requires=("app.pod",))
    old = manifest({"app.pod": pod_old, "a.container": a_old, "b.container": b})
    new = manifest({"app.pod": pod_new, "a.container": a_new, "b.container": b})

    p = plan(old, new)

    assert p.restart == ("app.pod",)
    assert p.with_pod == ("a.container", "b.container")
    assert "restarted by its pod app.pod" in p.reasons["a.container"]


def test_container_changed_without_its_pod_is_restarted_alone() -> None:
    pod = U("[Pod]\n")
    old = manifest(
        {
            "app.pod": pod,
            "a.container": U("[Container]\nImage=a\nPod=app.pod\n", requires=("app.pod",)),
        }
    )
    new = manifest(
        {
            "app.pod": pod,
            "a.container": U("[Container]\nImage=a:2\nPod=app.pod\n", requires=("app.pod",)),
        }
    )

    p = plan(old, new)

    assert p.restart == ("a.container",)
    assert p.with_pod == ()


def test_first_activation_starts_in_dependency_order() -> None:
    new = manifest(
        {
            "web.container": U("[Container]\nImage=w\n", requires=("api.container", "data.volume")),
            "api.container": U("[Container]\nImage=a\n", requires=("db.container",)),
            "db.container": U("[Container]\nImage=d\n", requires=("data.volume",)),
            "data.volume": U("[Volume]\n"),
        }
    )

    p = plan(None, new)

    assert p.start == ("data.volume", "db.container", "api.container", "web.container")
    assert [k for _a, k in p.steps()] == list(p.start)


def test_removed_units_stop_dependents_first() -> None:
    old = manifest(
        {
            "web.container": U("[Container]\nImage=w\n", requires=("db.container",)),
            "db.container": U("[Container]\nImage=d\n", requires=("data.volume",)),
            "data.volume": U("[Volume]\n"),
        }
    )

    assert plan(old, manifest({})).stop == ("web.container", "db.container", "data.volume")


def test_dependency_order_survives_a_cycle_across_generations() -> None:
    assert dependency_order({"a": {"b"}, "b": {"a"}, "c": set()}) in (
        ("a", "b", "c"),
        ("c", "a", "b"),
    )


def test_each_dependency_level_is_one_batch_in_order_and_stops_go_dependents_first() -> None:
    vol = U("[Volume]\n")
    db_old, db_new = U("[Container]\nImage=db:1\n"), U("[Container]\nImage=db:2\n")
    api = U("[Container]\nImage=api\n", requires=("db.container", "data.volume"))
    web = U("[Container]\nImage=web\n", requires=("api.container",))
    cache = U("[Container]\nImage=cache\n")
    old = manifest({"db.container": db_old})
    new = manifest(
        {
            "db.container": db_new,
            "data.volume": vol,
            "api.container": api,
            "web.container": web,
            "cache.container": cache,
        }
    )

    p = plan(old, new)

    assert p.start_levels() == (
        ("restart", ("db.container",)),
        ("start", ("cache.container", "data.volume")),
        ("start", ("api.container",)),
        ("start", ("web.container",)),
    )
    back = plan(new, old)
    assert back.stop_levels() == (
        ("web.container",),
        ("api.container",),
        ("data.volume", "cache.container"),
    )


# --- rule 9a: reload instead of restart -------------------------------------------------------

CONF = "files/web/web.conf"
RELOADING = U(
    "[Container]\nImage=web\n[Service]\nExecReload=/usr/bin/podman kill --signal SIGHUP web\n",
    refs=(CONF,),
    reload=(CONF,),
)
RUNNING = {"web.container": "active"}


def test_a_change_of_only_live_config_files_reloads() -> None:
    old = manifest({"web.container": RELOADING}, {CONF: b"a"})
    new = manifest({"web.container": RELOADING}, {CONF: b"b"}, n=2)

    p = plan(old, new, RUNNING)

    assert p.reload == ("web.container",) and p.restart == ()
    assert p.reasons["web.container"] == (
        f"changed: {CONF}; only config files: reloaded, not restarted"
    )
    assert not p.changes_nothing
    assert p.as_json()["reload"] == ["web.container"]


@pytest.mark.parametrize(
    ("new_unit", "live", "why"),
    [
        (
            dataclasses.replace(RELOADING, text=RELOADING.text + "Environment=A=1\n"),
            RUNNING,
            "unit",
        ),
        (RELOADING, {"web.container": "failed"}, "not running"),
        (dataclasses.replace(RELOADING, reload=None), RUNNING, "no reload"),
    ],
)
def test_a_reload_is_a_restart_when_more_than_config_changed_or_it_does_not_run(
    new_unit: U, live: dict[str, str], why: str
) -> None:
    old = manifest({"web.container": RELOADING}, {CONF: b"a"})
    new = manifest({"web.container": new_unit}, {CONF: b"b"}, n=2)

    p = plan(old, new, live)

    assert p.restart == ("web.container",) and p.reload == (), why


def test_a_reloadable_container_whose_pod_restarts_goes_with_the_pod() -> None:
    pod = U("[Pod]\n")
    member = dataclasses.replace(RELOADING, requires=("app.pod",))
    old = manifest({"app.pod": pod, "web.container": member}, {CONF: b"a"})
    new = manifest({"app.pod": U("[Pod]\nPodName=x\n"), "web.container": member}, {CONF: b"b"}, n=2)

    p = plan(old, new, {**RUNNING, "app.pod": "active"})

    assert p.restart == ("app.pod",) and p.with_pod == ("web.container",) and p.reload == ()
