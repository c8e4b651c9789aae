"""What the deploy commands report: the switcher's typed reply (activate/protocol.py) and what
this deploy adds (host, bytes sent, its push); `to_json` is the `--json` output."""

from __future__ import annotations

from typing import Any

import attrs

from activate.protocol import Action, Collected, Planned, Status, Switched
from builder.deploy.push import PushReport


@attrs.frozen
class Pushed:
    """`push`: what went to the server, and the secrets sent with it (names only)."""

    report: PushReport
    secrets_sent: tuple[str, ...]
    where: str

    def to_json(self) -> dict[str, Any]:
        return {
            "action": Action.PUSH.value,
            **self.report.to_json(),
            "secrets_sent": list(self.secrets_sent),
            "where": self.where,
        }


@attrs.frozen
class SwitchResult:
    """`activate`, `switch`, `rollback`: the switcher's report, and what this deploy sent."""

    action: Action
    host: str
    reply: Switched
    bytes_sent: int
    built: bool | None = None  # `switch`: whether the build made a new generation
    push: PushReport | None = None  # `switch`: its push
    channels: int | None = None  # `switch`: remote commands started, the confirmation's too

    def to_json(self) -> dict[str, Any]:
        out = {"action": self.action.value, "host": self.host, **self.reply.to_json()}
        out["bytes_sent"] = self.bytes_sent
        if self.push is not None:
            out.update(action=self.action.value, built=self.built, push=self.push.to_json())
        if self.channels is not None:
            out["channels"] = self.channels
        return out


@attrs.frozen
class StatusResult:
    host: str
    reply: Status
    bytes_sent: int
    where: str
    switcher_repaired: str | None = None  # what running the switcher fixed on the server first

    def to_json(self) -> dict[str, Any]:
        repaired = {"switcher_repaired": self.switcher_repaired} if self.switcher_repaired else {}
        out = {"host": self.host, **self.reply.to_json(), "bytes_sent": self.bytes_sent}
        return {**out, "where": self.where, **repaired}


@attrs.frozen
class GcResult:
    host: str
    server: Collected
    local_removed: tuple[int, ...]
    switcher_repaired: str | None = None

    def to_json(self) -> dict[str, Any]:
        repaired = {"switcher_repaired": self.switcher_repaired} if self.switcher_repaired else {}
        out = {"host": self.host, "server": self.server.to_json()}
        return {**out, "local_removed": list(self.local_removed), **repaired}


@attrs.frozen
class PlanResult:
    host: str
    reply: Planned
    push: PushReport

    def to_json(self) -> dict[str, Any]:
        out = {"action": Action.PLAN.value, "host": self.host, **self.reply.to_json()}
        return {**out, "push": self.push.to_json()}
