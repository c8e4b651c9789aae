#!/usr/bin/env python3
"""Stand-ins for systemctl, podman and quadlet that keep state in a JSON file.

Installed as symlinks named after the real tools; every call is logged. They model just what
the switcher relies on: units exist only after daemon-reload and only if their file is under
FAKE_ROOT and not broken; start/stop change ActiveState; quadlet -dryrun names each service.
Knobs (environment): FAKE_STATE (the JSON file), FAKE_ROOT, FAKE_FAIL_START (space-separated
services whose start fails), FAKE_START_LIMITED (services that crash-looped: every start fails
until `reset-failed` names them), FAKE_CANCEL (`svc=N ...`: the first N starts of svc are
canceled, as when another job on the unit wins), FAKE_FAIL_PULL (images whose pull fails),
FAKE_PODMAN_VERSION. Calls may run at once (parallel pulls): each holds a lock on the state.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_STATE"])
ROOT = Path(os.environ.get("FAKE_ROOT", "/"))
QUADLET_SUFFIX = {"container": "", "pod": "-pod", "volume": "-volume", "network": "-network"}


def load() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"loaded": [], "active": [], "failed": [], "enabled": [], "images": [], "networks": []}


def save(state: dict) -> None:
    STATE.write_text(json.dumps(state, indent=1, sort_keys=True))


def log(argv: list[str]) -> None:
    with open(STATE.with_suffix(".log"), "a") as fh:
        fh.write(" ".join(argv) + "\n")


def unit_files() -> dict[str, Path]:
    """service name -> unit file, with quadlet's naming."""
    found = {}
    for path in sorted((ROOT / "etc/containers/systemd").glob("*")):
        stem, _, kind = path.name.rpartition(".")
        if kind in QUADLET_SUFFIX and not path.name.startswith("."):
            found[f"{stem}{QUADLET_SUFFIX[kind]}.service"] = path
    for path in sorted((ROOT / "etc/systemd/system").glob("*")):
        if path.suffix in (".service", ".timer") and not path.name.startswith("."):
            found[path.name] = path
    return found


def systemctl(args: list[str]) -> int:
    state = load()
    verb = args[0]
    names = [a for a in args[1:] if not a.startswith("-")]
    if verb == "is-system-running":
        print("running")
        return 0
    if verb == "daemon-reload":
        state["loaded"] = sorted(
            s for s, p in unit_files().items() if b"BROKEN" not in p.read_bytes()
        )
    elif verb == "show":
        for svc in names:
            load_state = "loaded" if svc in state["loaded"] else "not-found"
            active = (
                "active"
                if svc in state["active"]
                else "failed"
                if svc in state["failed"]
                else "inactive"
            )
            sub = {"active": "running", "failed": "failed", "inactive": "dead"}[active]
            pid = 100 + sorted(state["loaded"] + [svc]).index(svc) if active == "active" else 0
            print(
                f"Id={svc}\nLoadState={load_state}\nActiveState={active}\nSubState={sub}\nMainPID={pid}\n"
            )
    elif verb in ("start", "restart", "stop"):
        for svc in names:
            if svc not in state["loaded"]:
                print(f"Failed to {verb} {svc}: Unit {svc} not found.", file=sys.stderr)
                return 5
            for key in ("active", "failed"):
                if svc in state[key]:
                    state[key].remove(svc)
            limited = os.environ.get("FAKE_START_LIMITED", "").split()
            if verb != "stop" and svc in limited and svc not in state.setdefault("reset", []):
                state["failed"].append(svc)
                save(state)
                print(
                    f"Job for {svc} failed because the control process exited with error code.",
                    file=sys.stderr,
                )
                return 1
            cancel = dict(c.split("=") for c in os.environ.get("FAKE_CANCEL", "").split())
            canceled = state.setdefault("canceled", {})
            if verb != "stop" and canceled.get(svc, 0) < int(cancel.get(svc, 0)):
                canceled[svc] = canceled.get(svc, 0) + 1
                save(state)
                print(f"Job for {svc} canceled.", file=sys.stderr)
                return 1
            if verb != "stop" and svc in os.environ.get("FAKE_FAIL_START", "").split():
                state["failed"].append(svc)
                save(state)
                print(
                    f"Job for {svc} failed because the control process exited with error code.",
                    file=sys.stderr,
                )
                return 1
            if verb != "stop":
                state["active"].append(svc)
                if svc.endswith("-network.service"):  # quadlet's network-create --ignore
                    name = "systemd-" + svc.removesuffix("-network.service")
                    state["networks"] = sorted(set(state["networks"]) | {name})
    elif verb == "enable":
        state["enabled"] = sorted(set(state["enabled"]) | set(names))
    elif verb == "disable":
        state["enabled"] = sorted(set(state["enabled"]) - set(names))
    elif verb == "reset-failed":
        state["failed"] = sorted(set(state["failed"]) - set(names))
        state["reset"] = sorted(set(state.get("reset", [])) | set(names))
    else:
        print(f"fake systemctl: unknown verb {verb}", file=sys.stderr)
        return 1
    save(state)
    return 0


def podman(args: list[str]) -> int:
    state = load()
    if args == ["--version"]:
        print(f"podman version {os.environ.get('FAKE_PODMAN_VERSION', '5.4.2')}")
        return 0
    if args[:2] == ["image", "exists"]:
        return 0 if args[2] in state["images"] else 1
    if args[0] == "pull":
        if args[1] in os.environ.get("FAKE_FAIL_PULL", "").split():
            print(f"Error: {args[1]}: reading manifest: manifest unknown", file=sys.stderr)
            return 125
        state["images"].append(args[1])
    elif args[:2] == ["network", "exists"]:
        return 0 if args[2] in state["networks"] else 1
    elif args[:2] == ["network", "rm"]:
        state["networks"].remove(args[-1])
    else:
        print(f"fake podman: unknown command {args}", file=sys.stderr)
        return 125
    save(state)
    return 0


def quadlet(args: list[str]) -> int:
    assert args == ["-dryrun"], args
    rc = 0
    for path in sorted(Path(os.environ["QUADLET_UNIT_DIRS"]).iterdir()):
        stem, _, kind = path.name.rpartition(".")
        if b"BADKEY" in path.read_bytes():
            print(
                f"quadlet-generator[1]: converting \"{path.name}\": unsupported key 'BADKEY'",
                file=sys.stderr,
            )
            rc = 1
            continue
        print(f"---{stem}{QUADLET_SUFFIX[kind]}.service---\n[Unit]\n")
    return rc


def main() -> int:
    tool = Path(sys.argv[0]).name
    with open(STATE.with_suffix(".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        log([tool, *sys.argv[1:]])
        return {"systemctl": systemctl, "podman": podman, "quadlet": quadlet}[tool](sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
