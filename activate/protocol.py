"""What the deployer and the switcher say to each other: the command line, the stages of an
activation, and the replies the switcher prints, as typed values both sides use.

The switcher runs `python3 -B -m activate COMMAND --state STATE --root ROOT [options]` and
prints one JSON object (or list) on stdout. A reply keeps `wire`, its JSON object as it came:
a switcher of another version may add keys this one does not know, and the deployer's
`--json` passes them on. Every field has a default unless every switcher ever shipped sends
it, so an installed switcher's reply still reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

# Python keywords among the keys: the field is `from_`, the key "from".
_KEYWORDS = {"from_": "from"}


class Stage(StrEnum):
    """Where a detached activation is (STATE/runs/RUN/status.json `phase`)."""

    STARTING = "starting"  # the starter made the run folder; the unit is not up yet
    SWITCHING = "switching"  # units are being stopped, written and started
    CHECKING = "checking"  # the health gate runs
    CONFIRM = "confirm"  # healthy; waits for `confirm` over a new connection (the dead-man)
    DONE = "done"  # ended; report.json holds the final report and exit code

    @property
    def waits_for_confirmation(self) -> bool:
        return self is Stage.CONFIRM


class Result(StrEnum):
    """How a switch ended (the `result` of reports and history lines), or a backup's run."""

    OK = "ok"
    UNHEALTHY = "unhealthy"  # the gate failed and the generation stays (--no-rollback, a rollback)
    ROLLED_BACK = "rolled back"
    ROLLBACK_FAILED = "rollback failed"  # the way back failed too: fix by hand
    AWAITING_CONFIRMATION = "awaiting confirmation"  # healthy, waiting for the dead-man's confirm
    UNKNOWN = "unknown"  # the deployer lost the connection while confirming
    FAILED = "failed"  # a backup or restore that failed


class Action(StrEnum):
    """What a deploy command does to a host (the `action` of reports and history lines)."""

    PUSH = "push"  # send a generation; nothing changes in what runs
    PLAN = "plan"  # push, then say what activating would do
    ACTIVATE = "activate"  # switch to a generation already pushed
    SWITCH = "switch"  # build, push and activate
    ROLLBACK = "rollback"  # activate an older generation with its own switcher

    @property
    def switches(self) -> bool:
        """Whether it changes what runs on the server (and so goes through the health gate)."""
        return self in (Action.ACTIVATE, Action.SWITCH, Action.ROLLBACK)


class Goal(StrEnum):
    """What an activation changes (nixos-rebuild's switch, test and boot; activate/bootgen.py)."""

    SWITCH = "switch"  # what runs now and what the next boot brings up
    TEST = "test"  # what runs now; the next boot brings up the generation that ran before
    BOOT = "boot"  # what the next boot brings up; nothing running changes


def switcher_argv(
    command: str, state: str, root: str, args: Sequence[str] = (), python: str = "python3"
) -> list[str]:
    """The command line of a switcher command, run in the folder that holds `activate/`."""
    # bytecode in STATE/cache/pycache, never in a generation or a switcher folder (hashed)
    cache = ["-X", f"pycache_prefix={state}/cache/pycache"] if state.startswith("/") else ["-B"]
    return [python, *cache, "-m", "activate", command, "--state", state, "--root", root, *args]


def sometimes(default: Any = None) -> Any:
    """A key the switcher writes only when it has something to say (a value other than
    `default`); the reader then sees `default`."""
    return field(default=default, metadata={"sometimes": True})


def to_json(value: Any) -> Any:
    """A reply's value as JSON: typed parts written back as the switcher writes them."""
    if isinstance(value, Reply | Recovered):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_json(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _own(value: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(value) if f.name != "wire"]


def _fields_json(value: Any) -> dict[str, Any]:
    """A dataclass as its JSON object, in field order, without the keys left unsaid."""
    return {
        _KEYWORDS.get(f.name, f.name): to_json(getattr(value, f.name))
        for f in _own(value)
        if not (f.metadata.get("sometimes") and getattr(value, f.name) == f.default)
    }


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A reply of the switcher: typed fields, and the JSON object it came as."""

    wire: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The reply as the switcher sent it (keys of other versions included)."""
        if self.wire:
            return dict(self.wire)
        return _fields_json(self)

    def evolve(self, **changes: Any) -> Self:
        """Fields changed by the deployer, in the typed view and in the JSON alike."""
        json = {_KEYWORDS.get(k, k): to_json(v) for k, v in changes.items()}
        return dataclasses.replace(self, wire={**self.to_json(), **json}, **changes)


# ---- requests --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HaveRequest:
    """`have`'s stdin for a switcher that reads deltas: a base both sides have (None: none),
    and the object hashes that base lacks."""

    base: str | None
    hashes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "hashes": sorted(self.hashes)}


@dataclass(frozen=True, kw_only=True)
class SecretVersion:
    """One version of a secret: asked for by `secrets-have`, named in its reply."""

    name: str
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class SecretValue(SecretVersion):
    """One version of a secret with its value (base64), as `secrets-receive` reads it."""

    value: str


@dataclass(frozen=True, kw_only=True)
class SecretCiphertext(SecretVersion):
    """One version of a secret as an age file (base64) the server opens with its own host key;
    its fingerprint is the SHA-256 hex of the file's bytes. Only a switcher that has
    activate/agecrypt.py reads it."""

    age: str


@dataclass(frozen=True, kw_only=True)
class SecretsDelivery:
    """`secrets-receive`'s stdin: the versions a generation needs that the server lacks."""

    secrets: tuple[SecretValue | SecretCiphertext, ...]


# ---- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HaveReply(Reply):
    base: str | None = None  # the base the server can rebuild a delta on; None: send it whole
    missing: tuple[str, ...]  # the object hashes to send


@dataclass(frozen=True, kw_only=True)
class ObjectsMissing(Reply):
    """`have`'s answer to a plain list of hashes (a deployer that sends no base)."""

    missing: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Received(Reply):
    generation: int = 0
    hash: str = ""
    objects_received: int = 0
    bytes_received: int = 0
    already_present: bool = False


@dataclass(frozen=True, kw_only=True)
class SecretsMissing(Reply):
    missing: tuple[SecretVersion, ...]


@dataclass(frozen=True, kw_only=True)
class SecretsStored(Reply):
    generation: int = 0
    stored: tuple[str, ...] = ()
    already_present: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Check:
    """One health check's last result (activate/health.py)."""

    unit: str | None = None  # "*": every unit at once
    kind: str = ""  # "unit", "http", "tcp" or "command"
    check: str = ""
    ok: bool = True
    output: str = ""


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """What the health gate found (activate/health.py)."""

    passed: bool = True
    seconds: float = 0.0
    timeout: float = 0.0
    settle: float = 0.0
    checks: tuple[Check, ...] = ()
    skipped: str | None = sometimes()  # why the gate did not run (files only, no units)


@dataclass(frozen=True, kw_only=True)
class Kept:
    """The data snapshot taken before a switch (activate/snapshot.py): each unit's volumes or
    dump, under `path`."""

    generation: int | None = None
    from_: int | None = None
    time: str | None = None
    units: dict[str, Any] = field(default_factory=dict)
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class Restored:
    """A snapshot put back by `rollback --restore-data`."""

    unit: str
    path: str
    replaced_data_kept_in: str


@dataclass(frozen=True, kw_only=True)
class HookRun:
    """A deploy hook the switch ran (activate/hooks.py); `exit_code` None: killed at its timeout."""

    phase: str = ""
    number: int = 0
    command: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    timeout: int = 0
    output: str = ""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What an activation does to each unit (activate/planner.py)."""

    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    with_pod: tuple[str, ...] = ()  # restarted by their pod, not one by one
    leave: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()  # networks removed to be made anew
    reload: tuple[str, ...] = sometimes(())  # reloaded: only their live config files changed
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Switched(Reply):
    """`activate`, `rollback` and `confirm`: the switch's report, or with `phase` CONFIRM a
    detached run waiting for its confirmation."""

    from_: int | None = None
    to: int | None = None
    plan: Plan | None = None
    result: Result = Result.OK
    services: str | None = None
    warnings: tuple[str, ...] = ()
    server: dict[str, Any] | None = sometimes()  # what the server runs (python, podman, ...)
    pulled: tuple[str, ...] | None = sometimes()  # images pulled for the switch
    overwritten: tuple[str, ...] | None = sometimes()  # drift --force replaced
    files: dict[str, Any] | None = sometimes()  # unit files written and removed
    secrets: dict[str, Any] | None = sometimes()  # podman secrets and files made for it
    error: str | None = sometimes()
    seconds: float | None = sometimes()
    recovered: Recovered | None = sometimes()
    snapshot: Kept | None = sometimes()
    health: HealthReport | None = sometimes()
    unchanged: str | None = sometimes()  # why no settle window and no confirmation: none needed
    confirmed: bool = sometimes(False)
    phase: Stage | None = sometimes()
    run: str | None = sometimes()  # the detached run to `confirm`
    folder: str | None = sometimes()  # the generation folder `confirm` runs in
    confirm_seconds_left: float = sometimes(0.0)
    snapshots: tuple[Any, ...] = sometimes(())  # what the generations rolled back past kept
    data_warnings: tuple[str, ...] = sometimes(())
    restored: tuple[Restored, ...] = sometimes(())
    hooks: tuple[HookRun, ...] = sometimes(())  # the deploy hooks run, in order
    goal: Goal = sometimes(Goal.SWITCH)
    boot: int | None = sometimes()  # what the next boot brings up, when it is not `to`

    @property
    def waiting(self) -> bool:
        return self.phase is not None and self.phase.waits_for_confirmation


@dataclass(frozen=True, kw_only=True)
class Planned(Reply):
    from_: int | None = None
    to: int
    plan: Plan
    drift: tuple[str, ...] = ()
    services: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HistoryEntry(Reply):
    """A line of STATE/history.jsonl."""

    time: str | None = None
    user: str | None = None
    action: str | None = None  # an Action, "restore-data", "gc", "recover", ...
    from_: int | None = None
    to: int | None = None
    result: Result | None = None
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class UnitStatus:
    service: str | None = None
    active: str | None = None
    sub: str | None = None
    main_pid: int | None = None


@dataclass(frozen=True, kw_only=True)
class Recovered:
    """A switch killed halfway that `status` finished or undid first (activate/recover.py), or
    why that failed (`result` "failed" and `error`)."""

    interrupted: dict[str, Any] | None = None  # the pending record: action, from, to, ...
    result: str | None = None  # "finished", "undone" or "failed"
    active: int | None = None  # the generation active after it
    detail: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.interrupted is None:
            return {"result": self.result, "error": self.error}
        return {
            "interrupted": self.interrupted,
            "result": self.result,
            "active": self.active,
            "detail": self.detail,
        }


@dataclass(frozen=True, kw_only=True)
class Status(Reply):
    current: int | None
    hash: str | None = None
    units: dict[str, UnitStatus] = field(default_factory=dict)
    last: HistoryEntry | None = None
    services: str | None = None
    drift: tuple[str, ...] = ()
    interrupted: Any = None
    recovered: Recovered | None = None
    switching: Any = None
    boot: int | None = sometimes()  # what the next boot brings up, when it is not `current`


@dataclass(frozen=True, kw_only=True)
class GenerationRow(Reply):
    """A generation on the server (`generations`)."""

    generation: int
    hash: str | None = None
    built_at: str | None = None
    active: bool = False
    units: int | None = None
    folder: str | None = None
    rollback_target: bool = False
    previous: bool = False
    error: str | None = sometimes()  # its manifest does not read


@dataclass(frozen=True, kw_only=True)
class Collected(Reply):
    """`gc`: what went from the server."""

    removed: tuple[int, ...] = ()
    objects_removed: int = 0
    bytes_removed: int = 0
    kept: tuple[int, ...] = ()
    snapshots_removed: tuple[str, ...] = ()
    secret_versions_removed: int = 0
    # unsure which versions are used (a generation it cannot read): only the count, 0
    podman_secrets_removed: tuple[str, ...] | None = sometimes()
    completed_files_removed: int | None = sometimes()


@dataclass(frozen=True, kw_only=True)
class BackupSnapshot:
    """A snapshot in a host's backup repository."""

    id: str = ""
    short_id: str = ""
    time: str = ""
    volume: str = ""
    run: str | None = None  # the backup run that made it; None: made by hand


@dataclass(frozen=True, kw_only=True)
class SnapshotList(Reply):
    """The backup script's `list` (activate/backup/restore.py), as `restore --list` reports it."""

    action: str = "list"
    host: str | None = None
    volumes: tuple[str, ...] = ()
    snapshots: tuple[BackupSnapshot, ...] = ()
