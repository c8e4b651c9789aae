"""How a switch proves that it worked: the health gate's windows, the deployer's confirmation,
and whether a failed gate rolls back (docs/reliability.md). One Safety for both sides: the
deployer builds it from its options and passes it on as the switcher's (`argv`)."""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import Manifest
from .protocol import Goal
from .runs import Run


@dataclass(frozen=True)
class Safety:
    """What proves a switch worked, and what happens when nothing does."""

    health_timeout: float | None = None  # None: the manifest's deploy.health_timeout
    settle: float | None = None  # None: the manifest's deploy.health_settle
    confirm_timeout: float | None = None  # with `run`; None: the manifest's deploy.confirm_timeout
    rollback: bool = True  # False (--no-rollback): a failed gate leaves the generation active
    run: Run | None = None  # a detached activation (activate/detach.py)
    goal: Goal = Goal.SWITCH  # whether the next boot brings it up too (activate/bootgen.py)

    def argv(self) -> list[str]:
        """The switcher's options that ask for this (a deployer's call, a detached run's)."""
        out = ["--no-rollback"] * (not self.rollback)
        out += ["--goal", str(self.goal)] * (self.goal is not Goal.SWITCH)
        for flag, value in (
            ("--health-timeout", self.health_timeout),
            ("--confirm-timeout", self.confirm_timeout),
        ):
            if value is not None:
                out += [flag, str(value)]
        return out

    def timeouts(self, manifest: Manifest) -> tuple[float, float]:
        deploy = manifest.deploy
        timeout = self.health_timeout
        if timeout is None:
            timeout = deploy.get("health_timeout", DEFAULT_HEALTH_TIMEOUT)
        settle = self.settle if self.settle is not None else deploy.get("health_settle", 0)
        return float(timeout), float(settle)

    def confirm(self, manifest: Manifest) -> float:
        """Seconds a detached activation waits for `confirm` (0: it does not wait)."""
        if self.run is None:
            return 0.0
        if self.confirm_timeout is not None:
            return float(self.confirm_timeout)
        return float(manifest.deploy.get("confirm_timeout", DEFAULT_CONFIRM_TIMEOUT))


DEFAULT_HEALTH_TIMEOUT = 60
DEFAULT_CONFIRM_TIMEOUT = 30
