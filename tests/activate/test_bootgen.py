"""A `--boot` is recorded in history (`next-boot`) without its generation counting as having
run: `rollback` never picks a generation that only waited for a boot."""

from __future__ import annotations

from activate.store import NEXT_BOOT, ever_active, previous_active, rollback_target


def line(action: str, from_: int | None, to: int) -> dict[str, object]:
    return {"action": action, "from": from_, "to": to, "result": "ok"}


def test_a_generation_recorded_for_the_next_boot_never_ran() -> None:
    history = [
        line("switch", None, 1),
        line("switch", 1, 3),
        line(NEXT_BOOT, 3, 2),  # --boot of an older generation: it never ran
        line("switch", 3, 4),
    ]
    assert ever_active(history) == [1, 3, 4]
    assert rollback_target(history, 4, {1, 2, 3, 4}) == 3
    assert previous_active([*history, line(NEXT_BOOT, 4, 4)], 4) == 3
    # once the boot brought it up, it ran
    booted = [*history, line(NEXT_BOOT, 4, 2), line("boot", 4, 2)]
    assert ever_active(booted) == [1, 3, 4, 2] and previous_active(booted, 2) == 4
