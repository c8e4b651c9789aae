#!/usr/bin/python3
"""Backups and restores of one host's volumes, run on the server (python3 standard library only).

`bundle build` ships this file as STATE/current/scripts/backup.py, with its plan beside it in
scripts/backup.json (made from the stack's [backup] table by builder/render/features/backup.py); backup.service
runs it from backup.timer. By hand, as root (as the host's user on a rootless host, with its
~/.local/state/bundle instead of /var/lib/bundle; docs/operations.md):

    /var/lib/bundle/current/scripts/backup.py                       back up every volume now
    /var/lib/bundle/current/scripts/backup.py list [SERVICE]        the snapshots, by run
    /var/lib/bundle/current/scripts/backup.py restore SERVICE [--snapshot ID]
    /var/lib/bundle/current/scripts/backup.py restore --all         every service (a new host)

What a backup does, for each group of volumes (the named volumes of `stateful` containers; a
pod's volumes form one group, so an application and its database are saved together):

1. take the switcher's lock (STATE/lock), so no deploy starts or stops containers meanwhile;
2. stop every container that mounts one of the group's volumes;
3. bind-mount each volume at /run/bundle-backup/volumes/VOLUME (the same path on every host,
   so snapshots of a volume follow each other whatever the storage path) and back it up with
   restic or kopia, tagged `volume:VOLUME` and `run:RUN` (RUN = the run's UTC start time);
4. start again, whatever happened, every container that was running before.

With method "snapshot", the containers of every group are stopped together only while an LVM
or btrfs snapshot of their filesystems is taken (seconds), and the backup reads the snapshot.
A volume on any other filesystem falls back to "stop", and the journal says so.

On a rootless host (`rootless = true`, docs/rootless.md) it runs as the host's user, from
that user's systemd (backup.service is a user unit): units are stopped and started with
`systemctl --user`, and each volume is read or written from inside the user namespace
(`podman unshare`, where the container's owners are the same numbers as inside the
containers, so a restore gives the files back to the same users), in a private mount
namespace whose /run is a copy holding /run/bundle-backup: the path is the same as on a
rootful host, so snapshots move between the two. The cache is ~/.cache/bundle-backup.

On success: ping HEALTHCHECK_URL, write the node-exporter textfile metric
`bundle_backup_last_success_timestamp_seconds{host="HOST"}`, record STATE/backup/last.json.
On any failure: ping HEALTHCHECK_URL/fail (with the reason as the body), exit 1.

Secrets (repository password, S3 keys, healthcheck URL) are read from the files the switcher
completes under STATE/rendered/ (root only) and given to restic/kopia in their environment,
never on a command line and never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STABLE_ROOT = Path("/run/bundle-backup")
CACHE_ROOT = Path("/var/cache/bundle-backup")
LOCK_WAIT = 1800  # seconds to wait for a deploy that holds the lock
STAGE_NAME = ".bundle-restore"
INNER = "_volume"  # the hidden command a rootless run starts inside the user namespace
COMMAND_TIMEOUT = None  # backups of big volumes take what they take; the unit has a timeout


class Failure(Exception):
    """One line for a person: what failed and what to do."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT (the unit was stopped or timed out): clean up, start containers."""


def say(line: str) -> None:
    """A line for the journal; a reader that went away must not stop a restore halfway."""
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


# --- configuration ---------------------------------------------------------------------------


def default_config() -> Path:
    return Path(__file__).resolve().parent / "backup.json"


JSON_DEPTH, JSON_INT_DIGITS = 64, 19  # as activate/strict_json.py, which this script cannot import


def parse_json(text: str | bytes, what: str, expect: type | tuple[type, ...] = dict) -> Any:
    """Plain JSON of the `expect`ed type, or Failure in one line: nesting past JSON_DEPTH,
    integers past JSON_INT_DIGITS, NaN/Infinity and a key given twice are refused."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                raise ValueError(f"the key {key[:60]!r} appears twice in one object")
            obj[key] = value
        return obj

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > JSON_INT_DIGITS:
            raise ValueError(f"an integer longer than {JSON_INT_DIGITS} digits")
        return int(digits)

    def number(digits: str) -> float:
        if not math.isfinite(value := float(digits)):
            raise ValueError("a number too large for a float")
        return value

    def constant(name: str) -> Any:
        raise ValueError(f"{name} (not JSON)")

    try:
        found = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=integer,
            parse_float=number,
            parse_constant=constant,
        )
    except RecursionError:
        raise Failure(f"{what}: not valid JSON: nested deeper than {JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise Failure(f"{what}: not valid JSON: {exc}") from None
    stack = [(found, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > JSON_DEPTH:
                raise Failure(f"{what}: not valid JSON: nested deeper than {JSON_DEPTH} levels")
            stack += [(c, depth + 1) for c in (item.values() if isinstance(item, dict) else item)]
    if not isinstance(found, expect):
        kind = {dict: "an object", list: "a list"}.get(type(found), "a single value")
        raise Failure(f"{what}: not the JSON expected ({kind} at the top level)")
    return found


def json_records(text: str, what: str) -> list[dict[str, Any]]:
    """A JSON list of objects that each have a string "id" (restic's and kopia's listings)."""
    records = parse_json(text or "[]", what, (list, type(None))) or []
    for item in records:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise Failure(f'{what}: an entry without a string "id"')
    return records


def load_config(path: Path) -> dict[str, Any]:
    try:
        cfg: dict[str, Any] = parse_json(path.read_bytes(), str(path))
    except OSError as exc:
        raise Failure(f"cannot read the backup plan {path}: {exc.strerror}") from None
    except Failure as exc:
        raise Failure(f"{exc}; rebuild and push the bundle") from None
    if cfg.get("format") != 1:
        raise Failure(f"{path}: unknown format {cfg.get('format')!r}; use this bundle's own script")
    return cfg


ROOTLESS = False  # set by main() from the plan: this host's units are the user's
INSIDE = False  # set by main() in the process that runs inside the user namespace
CONFIG_FILE: Path | None = None  # the plan main() read, for the process inside the namespace


def systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args] if ROOTLESS else ["systemctl", *args]


def home() -> Path:
    """The running user's home (inside the user namespace the uid is 0: HOME says who)."""
    return Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)


def cache_root() -> Path:
    return home() / ".cache/bundle-backup" if ROOTLESS else CACHE_ROOT


def read_secret(cfg: dict[str, Any], key: str) -> str | None:
    path = (cfg.get("secrets") or {}).get(key)
    if not path:
        return None
    try:
        value = Path(path).read_text()
    except OSError as exc:
        raise Failure(
            f"cannot read the secret file {path} ({exc.strerror}); activate the generation "
            "again (bundle switch HOST) so the switcher completes it"
        ) from None
    value = value.rstrip("\r\n")
    if "@@bundle-secret:" in value:
        raise Failure(f"{path} still holds a placeholder: the switcher did not complete it")
    return value


def healthcheck_url(cfg: dict[str, Any]) -> str | None:
    url: str | None = cfg.get("healthcheck_url")
    if url is None:
        with contextlib.suppress(Failure):
            url = read_secret(cfg, "healthcheck_url")
    return url.strip().rstrip("/") if url else None


# --- running things --------------------------------------------------------------------------


def run(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    what: str,
    capture: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv; a failure becomes Failure naming `what` and the command's last error line."""
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Failure(f"{what}: {argv[0]} is not installed on this server") from None
    if check and done.returncode != 0:
        raise Failure(f"{what} failed: {last_line(done.stderr, done.returncode)}")
    return done


def last_line(text: str | None, rc: int) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {rc} and no message"


# --- the switcher's lock ---------------------------------------------------------------------


@contextlib.contextmanager
def locked(state_dir: str, command: str) -> Iterator[None]:
    """STATE/lock, as the switcher takes it (activate/lock.py); waits for a deploy to end."""
    path = Path(state_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                    raise Failure(f"{path} is still held after {LOCK_WAIT} s: {holder}") from None
                if not told:
                    say(f"waiting for {path} (a deploy is running)")
                    told = True
                time.sleep(2)
        info = {
            "user": user_name(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info, sort_keys=True) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


# --- containers and volumes ------------------------------------------------------------------


def active_units(units: list[str]) -> list[str]:
    if not units:
        return []
    done = run(systemctl("is-active", *units), what="systemctl is-active", check=False)
    states = done.stdout.split()
    return [u for u, s in zip(units, states, strict=False) if s in ("active", "activating")]


def stop_units(units: list[str]) -> None:
    if units:
        say(f"stopping {' '.join(units)}")
        run(systemctl("stop", *units), what=f"stopping {' '.join(units)}")


def start_units(units: list[str]) -> list[str]:
    """Start units (in one transaction: systemd orders them); the lines of those that failed."""
    if not units:
        return []
    say(f"starting {' '.join(units)}")
    done = run(systemctl("start", *units), what="systemctl start", check=False)
    if done.returncode == 0:
        return []
    return [f"starting {' '.join(units)} failed: {last_line(done.stderr, done.returncode)}"]


@contextlib.contextmanager
def stopped(all_units: list[str], units: list[str], start_anyway: bool = False) -> Iterator[None]:
    """Stop `units`; afterwards start every unit that was running before (and `units` too
    when start_anyway), whatever happened in between."""
    before = active_units(all_units)
    try:
        stop_units(units)
        yield
    finally:
        wanted = [u for u in all_units if u in before or (start_anyway and u in units)]
        wanted += [u for u in units if u not in all_units and (start_anyway or u in before)]
        problems = start_units(wanted)
        if problems:
            raise Failure("; ".join(problems))


def ensure_volume(volume: str) -> None:
    """A volume that is gone (removed by hand, a new host) is created by its quadlet unit."""
    if run(["podman", "volume", "exists", volume], what="podman", check=False).returncode == 0:
        return
    say(f"volume {volume} does not exist: creating it with {volume}-volume.service")
    run(
        systemctl("restart", f"{volume}-volume.service"),
        what=f"creating volume {volume}",
    )


@contextlib.contextmanager
def volume_path(volume: str) -> Iterator[Path]:
    """The volume's data folder, mounted for as long as it is needed (volumes with mount
    options are mounted by podman only while something uses them)."""
    done = run(["podman", "volume", "mount", volume], what=f"mounting volume {volume}")
    path = Path(done.stdout.strip().splitlines()[-1])
    try:
        yield path
    finally:
        run(["podman", "volume", "unmount", volume], what="podman volume unmount", check=False)


def stable_path(volume: str) -> Path:
    return STABLE_ROOT / "volumes" / volume


@contextlib.contextmanager
def bound(source: Path, volume: str) -> Iterator[Path]:
    """`source` bind-mounted read-only at the volume's stable path."""
    dest = stable_path(volume)
    dest.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(dest):  # left by a run that was killed
        run(["umount", "--lazy", str(dest)], what=f"unmounting {dest}", check=False)
    run(["mount", "--bind", str(source), str(dest)], what=f"bind-mounting {source}")
    try:
        run(["mount", "-o", "remount,bind,ro", str(dest)], what=f"remounting {dest}", check=False)
        yield dest
    finally:
        run(["umount", str(dest)], what=f"unmounting {dest}", check=False)


# --- a rootless host: volumes are read and written inside the user namespace --------------


def in_user_namespace(tool: Tool, job: dict[str, Any]) -> str:
    """Run one volume's backup or restore (`job`) in this script started again under
    `podman unshare` (the user namespace, where the containers' owners are the numbers the
    containers see) and `unshare --mount` (a private mount namespace for the bind mounts);
    the line it ends with on success."""
    argv = [
        "podman", "unshare", "unshare", "--mount", "--propagation", "private",
        sys.executable, "-B", str(Path(__file__).resolve()),
        *(["--config", str(CONFIG_FILE)] if CONFIG_FILE else []),
        INNER, json.dumps({**job, "repository": tool.repository}),
    ]  # fmt: skip
    done = run(argv, what=f"{job['op']} of {job['volume']}", check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode != 0:
        errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
        raise Failure(errors[-1] if errors else last_line(done.stderr, done.returncode))
    for line in lines[:-1]:
        say(line)
    return lines[-1].removeprefix("ok: ") if lines else ""


def private_run() -> None:
    """In the private mount namespace: /run becomes a tmpfs holding the same entries as the
    real /run (bound back one by one) and /run/bundle-backup, which the user cannot create
    on the host, so the backed-up path is the one a rootful host records."""
    keep = Path(tempfile.mkdtemp(prefix="bundle-backup-run-"))
    try:
        run(["mount", "--rbind", "/run", str(keep)], what="keeping /run")
        run(["mount", "-t", "tmpfs", "-o", "mode=755", "bundle-backup", "/run"], what="/run")
        for name in sorted(os.listdir(keep)):
            source, dest = keep / name, Path("/run") / name
            if os.path.lexists(dest):  # /run/mount: mount(8) made its own
                continue
            if source.is_symlink():
                os.symlink(os.readlink(source), dest)
                continue
            if source.is_dir():
                dest.mkdir()
            else:
                dest.touch()
            run(["mount", "--rbind", str(source), str(dest)], what=f"/run/{name}", check=False)
    finally:
        run(["umount", "--lazy", str(keep)], what="unmounting", check=False)
        with contextlib.suppress(OSError):
            keep.rmdir()


def backup_volume(tool: Tool, volume: str, run_id: str) -> str:
    if ROOTLESS and not INSIDE:
        return in_user_namespace(tool, {"op": "backup", "volume": volume, "run": run_id})
    with volume_path(volume) as path, bound(path, volume) as stable:
        return tool.backup(volume, stable, run_id)


def restore_volume(tool: Tool, volume: str, snap: Snapshot) -> None:
    if ROOTLESS and not INSIDE:
        job = {"op": "restore", "volume": volume, "snapshot": dataclasses.asdict(snap)}
        in_user_namespace(tool, job)
        return
    with volume_path(volume) as path:
        stage = path / STAGE_NAME
        if stage.exists():
            shutil.rmtree(stage)
        try:
            root = tool.restore(snap, stage)
            replace_contents(path, root, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def cmd_inner(cfg: dict[str, Any], job: dict[str, Any]) -> int:
    """The process inside the user namespace: one volume, then "ok: WHAT HAPPENED"."""
    try:
        private_run()
    except OSError as exc:
        raise Failure(f"preparing /run/bundle-backup in a private mount namespace: {exc}") from None
    tool = make_tool(cfg, job.get("repository"))
    if job["op"] == "backup":
        say(f"ok: {backup_volume(tool, job['volume'], job['run'])}")
    else:
        restore_volume(tool, job["volume"], Snapshot(**job["snapshot"]))
        say("ok: restored")
    return 0


# --- the tools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str
    volume: str
    run: str
    host: str
    path: str  # the backed-up path, as the tool recorded it


def parse_s3(repository: str) -> dict[str, Any]:
    """s3:https://ENDPOINT/BUCKET[/PREFIX] (restic's syntax) as its parts."""
    rest = repository[len("s3:") :]
    tls = True
    if rest.startswith("http://"):
        tls, rest = False, rest[len("http://") :]
    elif rest.startswith("https://"):
        rest = rest[len("https://") :]
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise Failure(f"{repository}: write s3:https://ENDPOINT/BUCKET[/PREFIX]")
    return {"endpoint": parts[0], "bucket": parts[1], "prefix": "/".join(parts[2:]), "tls": tls}


class Tool:
    name = ""

    def __init__(self, cfg: dict[str, Any], repository: str | None = None) -> None:
        self.cfg = cfg
        self.host = cfg["host"]
        self.repository = repository or cfg["repository"]

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "KOPIA_"))}
        env.setdefault("HOME", str(home()))
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        key, secret = read_secret(self.cfg, "s3_access_key"), read_secret(self.cfg, "s3_secret_key")
        if key is not None and secret is not None:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = key, secret
        if self.cfg.get("s3_region"):
            env["AWS_DEFAULT_REGION"] = self.cfg["s3_region"]
        return env

    def require_installed(self) -> None:
        if shutil.which(self.name) is None:
            raise Failure(
                f"{self.name} is not installed on this server; install it "
                f"({'apt install restic' if self.name == 'restic' else 'see kopia.io/docs/installation'})"
            )

    def run(
        self, args: list[str], what: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([self.name, *args], self.env(), what=what, check=check)

    # implemented by each tool
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def open(self, create: bool) -> None:
        raise NotImplementedError

    def backup(self, volume: str, path: Path, run_id: str) -> str:
        raise NotImplementedError

    def snapshots(self, volume: str, host: str) -> list[Snapshot]:
        raise NotImplementedError

    def restore(self, snap: Snapshot, stage: Path) -> Path:
        """Extract a snapshot into `stage`; the folder holding the volume's files."""
        raise NotImplementedError

    def forget(self) -> None:
        raise NotImplementedError


KOPIA_RULES = {"last": "latest", "yearly": "annual"}  # kopia's names for restic's rules


def keep_args(keep: dict[str, int], style: str) -> list[str]:
    """`keep` as options: restic's `--keep-daily=7`, or kopia's (`--keep-latest`, `--keep-annual`)."""
    out = []
    for rule in ("last", "daily", "weekly", "monthly", "yearly"):
        n = int(keep.get(rule) or 0)
        if n > 0:
            name = rule if style == "restic" else KOPIA_RULES.get(rule, rule)
            out.append(f"--keep-{name}={n}")
    return out


def tag_value(tags: Any, key: str) -> str:
    """`volume:x` in restic's list of tags; `tag:volume` (or `volume`) in kopia's map."""
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str) and tag.startswith(f"{key}:"):
                return tag[len(key) + 1 :]
    elif isinstance(tags, dict):
        for name in (f"tag:{key}", key):
            if isinstance(tags.get(name), str):
                return str(tags[name])
    return ""


class Restic(Tool):
    name = "restic"

    def env(self) -> dict[str, str]:
        env = self.base_env()
        env["RESTIC_REPOSITORY"] = self.repository
        password = (self.cfg.get("secrets") or {}).get("password")
        read_secret(self.cfg, "password")  # a clear error when the file is missing
        env["RESTIC_PASSWORD_FILE"] = password or ""
        env["RESTIC_CACHE_DIR"] = str(cache_root() / "restic")
        return env

    def open(self, create: bool) -> None:
        found = self.run(["cat", "config"], "opening the repository", check=False)
        if found.returncode == 0:
            return
        reason = last_line(found.stderr, found.returncode)
        if not create:
            raise Failure(f"cannot open the restic repository {self.repository}: {reason}")
        made = self.run(["init"], "creating the repository", check=False)
        if made.returncode != 0:
            raise Failure(f"cannot open the restic repository {self.repository}: {reason}")
        say(f"created the restic repository {self.repository}")

    def backup(self, volume: str, path: Path, run_id: str) -> str:
        done = self.run(
            [
                "backup",
                "--json",
                "--host", self.host,
                "--tag", "bundle",
                "--tag", f"volume:{volume}",
                "--tag", f"run:{run_id}",
                str(path),
            ],
            f"backing up {volume}",
        )  # fmt: skip
        summary: dict[str, Any] = {}
        for line in done.stdout.splitlines():
            with contextlib.suppress(Failure):  # progress lines; only the summary counts
                item = parse_json(line, "restic's backup output")
                if item.get("message_type") == "summary":
                    summary = item
        snap = str(summary.get("snapshot_id", "?"))[:8]
        files = summary.get("total_files_processed", 0)
        size = human(summary.get("total_bytes_processed", 0))
        added = human(summary.get("data_added", 0))
        return f"snapshot {snap}, {files} files, {size} ({added} new)"

    def snapshots(self, volume: str, host: str) -> list[Snapshot]:
        args = ["snapshots", "--json", "--host", host, "--tag", "bundle"]
        if volume:
            args += ["--tag", f"volume:{volume}"]
        done = self.run(args, "listing the snapshots")
        out = []
        for s in json_records(done.stdout, "restic's snapshot list"):
            tags = s.get("tags") or []
            out.append(
                Snapshot(
                    id=s["id"],
                    short_id=s.get("short_id") or s["id"][:8],
                    time=str(s.get("time", ""))[:19].replace("T", " "),
                    volume=tag_value(tags, "volume"),
                    run=tag_value(tags, "run"),
                    host=s.get("hostname", ""),
                    path=(s.get("paths") or [""])[0],
                )
            )
        return out

    def restore(self, snap: Snapshot, stage: Path) -> Path:
        self.run(["restore", snap.id, "--target", str(stage)], f"restoring {snap.volume}")
        return stage / snap.path.lstrip("/")

    def forget(self) -> None:
        keep = keep_args(self.cfg.get("keep") or {}, "restic")
        if keep:
            self.run(
                ["forget", "--host", self.host, "--tag", "bundle", "--group-by", "host,paths",
                 *keep, "--prune"],
                "forgetting old snapshots",
            )  # fmt: skip


class Kopia(Tool):
    """Kopia: not in Debian, so only rendered and checked by the tests (docs/operations.md)."""

    name = "kopia"

    def env(self) -> dict[str, str]:
        env = self.base_env()
        env["KOPIA_PASSWORD"] = read_secret(self.cfg, "password") or ""
        env["KOPIA_CONFIG_PATH"] = str(
            Path(self.cfg["state_dir"]) / "backup/kopia/repository.config"
        )
        env["KOPIA_CACHE_DIRECTORY"] = str(cache_root() / "kopia")
        env["KOPIA_LOG_DIR"] = str(cache_root() / "kopia-logs")
        env["KOPIA_CHECK_FOR_UPDATES"] = "false"
        return env

    def storage_args(self) -> list[str]:
        repo = self.repository
        if repo.startswith("/"):
            return ["filesystem", f"--path={repo}"]
        s3 = parse_s3(repo)
        args = ["s3", f"--bucket={s3['bucket']}", f"--endpoint={s3['endpoint']}"]
        if s3["prefix"]:
            args.append(f"--prefix={s3['prefix'].rstrip('/')}/")
        if not s3["tls"]:
            args.append("--disable-tls")
        if self.cfg.get("s3_region"):
            args.append(f"--region={self.cfg['s3_region']}")
        return args

    def identity(self) -> list[str]:
        return [f"--override-hostname={self.host}", "--override-username=root"]

    def open(self, create: bool) -> None:
        Path(self.env()["KOPIA_CONFIG_PATH"]).parent.mkdir(parents=True, exist_ok=True)
        if (
            self.run(["repository", "status"], "kopia repository status", check=False).returncode
            == 0
        ):
            return
        storage = self.storage_args()
        found = self.run(
            ["repository", "connect", *storage, *self.identity()], "connecting", check=False
        )
        if found.returncode != 0:
            reason = last_line(found.stderr, found.returncode)
            if not create:
                raise Failure(f"cannot open the kopia repository {self.repository}: {reason}")
            lock = self.cfg.get("object_lock")
            retention = (
                ["--retention-mode=COMPLIANCE", f"--retention-period={lock}"] if lock else []
            )
            made = self.run(
                ["repository", "create", *storage, *retention, *self.identity()],
                "creating the repository",
                check=False,
            )
            if made.returncode != 0:
                raise Failure(f"cannot open the kopia repository {self.repository}: {reason}")
            say(f"created the kopia repository {self.repository}")
            if lock:
                self.run(
                    ["maintenance", "set", "--owner=me", "--extend-object-locks=true"],
                    "turning on object lock extension",
                )
        keep = keep_args(self.cfg.get("keep") or {}, "kopia")
        if keep and create:
            self.run(["policy", "set", "--global", *keep], "setting the retention policy")

    def backup(self, volume: str, path: Path, run_id: str) -> str:
        self.run(
            [
                "snapshot", "create", str(path),
                f"--tags=volume:{volume}", f"--tags=run:{run_id}",
                f"--description=bundle run:{run_id} volume:{volume}",
            ],
            f"backing up {volume}",
        )  # fmt: skip
        return "kopia snapshot saved"

    def snapshots(self, volume: str, host: str) -> list[Snapshot]:
        volumes = [volume] if volume else self.cfg["volumes"]
        out = []
        for v in volumes:
            source = f"root@{host}:{stable_path(v)}"
            done = self.run(["snapshot", "list", source, "--json"], "listing the snapshots")
            for s in json_records(done.stdout, "kopia's snapshot list"):
                tags = s.get("tags") or {}
                description = str(s.get("description", ""))
                run_id = tag_value(tags, "run") or next(
                    (w[4:] for w in description.split() if w.startswith("run:")), ""
                )
                out.append(
                    Snapshot(
                        id=s["id"],
                        short_id=s["id"][:8],
                        time=str(s.get("startTime", ""))[:19].replace("T", " "),
                        volume=tag_value(tags, "volume") or v,
                        run=run_id,
                        host=host,
                        path=str(stable_path(v)),
                    )
                )
        return out

    def restore(self, snap: Snapshot, stage: Path) -> Path:
        self.run(["snapshot", "restore", snap.id, str(stage)], f"restoring {snap.volume}")
        return stage

    def forget(self) -> None:
        pass  # kopia applies its retention policy after each snapshot


def make_tool(cfg: dict[str, Any], repository: str | None = None) -> Tool:
    tools: dict[str, type[Tool]] = {"restic": Restic, "kopia": Kopia}
    if cfg.get("tool") not in tools:
        raise Failure(f"unknown backup tool {cfg.get('tool')!r}")
    tool = tools[cfg["tool"]](cfg, repository)
    tool.require_installed()
    return tool


def human(n: Any) -> str:
    size = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# --- filesystem snapshots (method = "snapshot") ----------------------------------------------


@dataclass
class FsSnapshot:
    """One LVM or btrfs snapshot: where a volume's data is read from while it exists."""

    kind: str
    key: str  # the origin: VG/LV or the btrfs subvolume
    name: str  # the LV name or the snapshot subvolume path
    mount: Path | None = None
    base: Path = Path("/")  # the snapshot's view of `origin_base`
    origin_base: Path = Path("/")

    def view(self, path: Path) -> Path:
        return self.base / path.relative_to(self.origin_base)


def filesystem_of(path: Path) -> tuple[str, str, Path, str]:
    done = run(
        ["findmnt", "-n", "-r", "--nofsroot", "-o", "SOURCE,FSTYPE,TARGET,FSROOT",
         "--target", str(path)],
        what=f"findmnt {path}",
    )  # fmt: skip
    fields = [f.encode().decode("unicode_escape") for f in done.stdout.split()]
    if len(fields) < 4:
        raise Failure(f"findmnt gave no filesystem for {path}")
    return fields[0], fields[1], Path(fields[2]), fields[3]


def snapshot_plan(path: Path) -> tuple[str, str, str] | None:
    """How the filesystem holding `path` can be snapshotted: ("lvm", VG/LV, mount target),
    ("btrfs", subvolume root, ""), or None (neither: stop instead)."""
    source, fstype, target, _ = filesystem_of(path)
    if fstype == "btrfs":
        here = path
        while True:
            if here.stat().st_ino == 256 or here == target or here == here.parent:
                return ("btrfs", str(here), "")
            here = here.parent
    if shutil.which("lvs") and source.startswith("/dev/"):
        done = run(
            ["lvs", "--noheadings", "--separator", "/", "-o", "vg_name,lv_name", source],
            what="lvs",
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return ("lvm", done.stdout.strip(), str(target))
    return None


def create_snapshot(kind: str, key: str, target: str, size: str) -> FsSnapshot:
    if kind == "btrfs":
        name = str(Path(key) / ".bundle-backup-snapshot")
        if Path(name).exists():
            run(
                ["btrfs", "subvolume", "delete", name], what="removing an old snapshot", check=False
            )
        run(["btrfs", "subvolume", "snapshot", "-r", key, name], what=f"snapshotting {key}")
        return FsSnapshot(kind, key, name, None, Path(name), Path(key))
    vg, lv = key.split("/", 1)
    name = f"{lv}-bundle-backup"
    run(["lvremove", "-f", f"{vg}/{name}"], what="lvremove", check=False)  # a killed run's
    amount = ["--extents", size] if "%" in size else ["--size", size]
    run(["lvcreate", "--snapshot", "--name", name, *amount, key], what=f"snapshotting {key}")
    return FsSnapshot(kind, key, f"{vg}/{name}", None, Path("/"), Path(target))


def mount_snapshot(snap: FsSnapshot) -> None:
    if snap.kind != "lvm":
        return
    vg, name = snap.name.split("/", 1)
    mount = STABLE_ROOT / "snapshots" / f"{vg}-{name}"
    mount.mkdir(parents=True, exist_ok=True)
    device = f"/dev/{vg}/{name}"
    fstype = run(["blkid", "-o", "value", "-s", "TYPE", device], what="blkid", check=False)
    options = {"xfs": "ro,nouuid,norecovery", "ext4": "ro,noload", "ext3": "ro,noload"}.get(
        fstype.stdout.strip(), "ro"
    )
    run(["mount", "-o", options, device, str(mount)], what=f"mounting the snapshot {device}")
    snap.mount = mount
    snap.base = mount


def remove_snapshot(snap: FsSnapshot) -> None:
    if snap.kind == "btrfs":
        run(["btrfs", "subvolume", "delete", snap.name], what="removing the snapshot", check=False)
        return
    if snap.mount is not None:
        run(["umount", str(snap.mount)], what="unmounting the snapshot", check=False)
    run(["lvremove", "-f", snap.name], what="removing the snapshot", check=False)


# --- backup ----------------------------------------------------------------------------------


def run_id_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def backup_group(cfg: dict[str, Any], tool: Tool, group: dict[str, Any], run_id: str) -> None:
    say(f"group {group['name']}: volumes {', '.join(group['volumes'])}")
    with (
        locked(cfg["state_dir"], f"backup of {group['name']}"),
        stopped(cfg["units"], group["units"]),
    ):
        for volume in group["volumes"]:
            say(f"{volume}: {backup_volume(tool, volume, run_id)}")


def backup_snapshotted(
    cfg: dict[str, Any], tool: Tool, groups: list[dict[str, Any]], run_id: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Method "snapshot": the groups whose volumes can be snapshotted are stopped together only
    while the snapshots are taken; returns the groups left for "stop", and the errors."""
    paths: dict[str, Path] = {}
    plans: dict[str, tuple[str, str, str] | None] = {}
    for group in groups:
        for volume in group["volumes"]:
            with volume_path(volume) as path:
                paths[volume] = path
                plans[volume] = snapshot_plan(path)
    able = [g for g in groups if all(plans[v] for v in g["volumes"])]
    left = [g for g in groups if g not in able]
    for g in left:
        for v in g["volumes"]:
            if plans[v] is None:
                say(f"{v}: neither LVM nor btrfs under {paths[v]}: stopping {g['name']} instead")
    if not able:
        return left, []
    units = sorted({u for g in able for u in g["units"]})
    taken: dict[tuple[str, str], FsSnapshot] = {}
    errors: list[str] = []
    try:
        with locked(cfg["state_dir"], "backup snapshots"), stopped(cfg["units"], units):
            for g in able:
                for v in g["volumes"]:
                    kind, key, target = plans[v]  # type: ignore[misc]
                    if (kind, key) not in taken:
                        say(f"snapshot of {key} ({kind})")
                        taken[(kind, key)] = create_snapshot(
                            kind, key, target, cfg.get("snapshot_size") or "10%ORIGIN"
                        )
        for snap in taken.values():
            mount_snapshot(snap)
        for g in able:
            for v in g["volumes"]:
                kind, key, _ = plans[v]  # type: ignore[misc]
                view = taken[(kind, key)].view(paths[v])
                try:
                    with bound(view, v) as stable:
                        say(f"{v}: {tool.backup(v, stable, run_id)} (from the {kind} snapshot)")
                except Failure as exc:
                    errors.append(f"{v}: {exc}")
    finally:
        for snap in taken.values():
            remove_snapshot(snap)
    return left, errors


def metric_text(host: str, when: float) -> str:
    """The node-exporter textfile; its contract is docs/monitoring.md's (name, label, text)."""
    name = "bundle_backup_last_success_timestamp_seconds"
    return (
        f"# HELP {name} Unix time the last successful nightly backup finished.\n"
        f"# TYPE {name} gauge\n"
        f'{name}{{host="{host}"}} {int(when)}\n'
    )


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(dest: Path, text: str, mode: int = 0o644) -> None:
    """Replace `dest` so that a power cut leaves the old text or the new, never an empty file:
    a hidden temp name beside it, fsync, rename, fsync the folder."""
    tmp = dest.with_name(f".{dest.name}.tmp")  # not *.prom: node-exporter skips it
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fchmod(fh.fileno(), mode)
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    fsync_path(dest.parent)


def write_metric(cfg: dict[str, Any], when: float) -> None:
    path = cfg.get("metrics_file")
    if not path:
        return
    dest = Path(path).expanduser()  # a rootless host's default is under ~
    try:
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        publish(dest, metric_text(cfg["host"], when))
    except OSError as exc:
        say(f"warning: cannot write {dest}: {exc.strerror}")


def ping(url: str | None, suffix: str, body: str = "") -> None:
    """A healthchecks.io-style ping; never fails the backup (the ping is the messenger)."""
    if not url:
        return
    target = url + suffix
    for attempt in range(3):
        try:
            request = urllib.request.Request(target, data=body.encode()[:10000] or None)
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
            return
        except (OSError, ValueError) as exc:
            if attempt == 2:
                shown = urllib.parse.urlsplit(target)
                say(f"warning: ping to {shown.scheme}://{shown.hostname}/… failed: {exc}")
            else:
                time.sleep(2)


def record(cfg: dict[str, Any], entry: dict[str, Any]) -> None:
    folder = Path(cfg["state_dir"]) / "backup"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        publish(folder / "last.json", json.dumps(entry, indent=2, sort_keys=True) + "\n")


def cmd_backup(cfg: dict[str, Any]) -> int:
    url = healthcheck_url(cfg)
    ping(url, "/start")
    started = time.time()
    run_id = run_id_now()
    errors: list[str] = []
    say(f"backup run {run_id} of {cfg['host']} with {cfg['tool']} to {cfg['repository']}")
    try:
        tool = make_tool(cfg)
        tool.open(create=True)
        groups = list(cfg["groups"])
        if cfg.get("method") == "snapshot":
            groups, errors = backup_snapshotted(cfg, tool, groups, run_id)
        for group in groups:
            try:
                backup_group(cfg, tool, group, run_id)
            except Failure as exc:
                errors.append(f"{group['name']}: {exc}")
        if not errors:
            tool.forget()
    except Failure as exc:
        errors.append(str(exc))
    except Interrupted:
        errors.append("interrupted (the unit was stopped or timed out)")
    seconds = round(time.time() - started, 1)
    record(
        cfg,
        {
            "run": run_id,
            "result": "failed" if errors else "ok",
            "errors": errors,
            "seconds": seconds,
        },
    )
    if errors:
        for line in errors:
            say(f"error: {line}")
        say(f"backup run {run_id} FAILED after {seconds} s")
        ping(url, "/fail", "\n".join(errors))
        return 1
    write_metric(cfg, time.time())
    say(f"backup run {run_id} ok: {len(cfg['volumes'])} volume(s) in {seconds} s")
    ping(url, "")
    return 0


# --- list and restore ------------------------------------------------------------------------


def find_service(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    services = cfg["services"]
    if name not in services:
        raise Failure(
            f"{name!r} has no backed-up volumes on {cfg['host']}; one of: "
            f"{', '.join(sorted(services))}"
        )
    return dict(services[name])


def cmd_list(
    cfg: dict[str, Any], service: str | None, from_host: str | None, repo: str | None
) -> int:
    volumes = find_service(cfg, service)["volumes"] if service else cfg["volumes"]
    tool = make_tool(cfg, repo)
    tool.open(create=False)
    host = from_host or cfg["host"]
    snaps = [s for s in tool.snapshots("", host) if s.volume in volumes]
    rows = [
        {"id": s.id, "short_id": s.short_id, "time": s.time, "volume": s.volume, "run": s.run}
        for s in sorted(snaps, key=lambda s: (s.time, s.volume))
    ]
    say(json.dumps({"host": host, "volumes": volumes, "snapshots": rows}, sort_keys=True))
    return 0


def choose(snaps: list[Snapshot], volumes: list[str], wanted: str | None) -> dict[str, Snapshot]:
    """The snapshot to restore for each volume: the latest, those of run `wanted`, or the one
    snapshot whose id starts with `wanted` (that volume only)."""
    by_volume: dict[str, list[Snapshot]] = {v: [] for v in volumes}
    for s in snaps:
        if s.volume in by_volume:
            by_volume[s.volume].append(s)
    for v in by_volume:
        by_volume[v].sort(key=lambda s: s.time)
    if wanted is None:
        missing = [v for v, found in by_volume.items() if not found]
        if missing:
            raise Failure(f"no snapshot of {', '.join(missing)} in the repository yet")
        return {v: found[-1] for v, found in by_volume.items()}
    run_match = {v: s for v, found in by_volume.items() for s in found if s.run == wanted}
    if run_match:
        missing = [v for v in volumes if v not in run_match]
        if missing:
            raise Failure(f"run {wanted} has no snapshot of {', '.join(missing)}")
        return run_match
    id_match = [s for found in by_volume.values() for s in found if s.id.startswith(wanted)]
    if len(id_match) == 1:
        return {id_match[0].volume: id_match[0]}
    if len(id_match) > 1:
        raise Failure(f"{wanted!r} matches {len(id_match)} snapshots: give more of the id")
    raise Failure(
        f"no run or snapshot {wanted!r} among the snapshots of {', '.join(volumes)}; "
        "see the list (bundle restore HOST SERVICE --list)"
    )


def replace_contents(path: Path, root: Path, stage: Path) -> None:
    """The volume folder `path` gets exactly the files under `root` (inside `stage`)."""
    if not root.is_dir():
        raise Failure(f"the snapshot holds no folder {root.relative_to(stage)}")
    for entry in os.listdir(path):
        if entry == stage.name:
            continue
        target = path / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    # the restored files reach the disk before they take the volume's names
    for folder, _dirs, files in os.walk(root):
        for name in files:
            child = Path(folder, name)
            if child.is_file() and not child.is_symlink():  # never open a FIFO or a device
                fsync_path(child)
        fsync_path(Path(folder))
    for entry in os.listdir(root):
        os.rename(root / entry, path / entry)
    info = root.stat()
    os.chown(path, info.st_uid, info.st_gid)
    os.chmod(path, info.st_mode & 0o7777)
    fsync_path(path)


def restore_service(
    cfg: dict[str, Any],
    tool: Tool,
    name: str,
    service: dict[str, Any],
    snapshot: str | None,
    host: str,
) -> list[str]:
    chosen = choose(tool.snapshots("", host), service["volumes"], snapshot)
    for v, s in sorted(chosen.items()):
        say(
            f"{name}: {v} from snapshot {s.short_id} of {s.time} (run {s.run or '?'}, host {s.host})"
        )
    done = []
    with (
        locked(cfg["state_dir"], f"restore of {name}"),
        stopped(cfg["units"], service["units"], start_anyway=True),
    ):
        for volume, snap in sorted(chosen.items()):
            ensure_volume(volume)
            restore_volume(tool, volume, snap)
            say(f"{volume}: restored")
            done.append(volume)
    return done


def cmd_restore(
    cfg: dict[str, Any],
    name: str | None,
    snapshot: str | None,
    from_host: str | None,
    repo: str | None,
) -> int:
    """Restore one service, or (name None) every group: what a rebuilt host needs."""
    services = {name: find_service(cfg, name)} if name else {g["name"]: g for g in cfg["groups"]}
    tool = make_tool(cfg, repo)
    tool.open(create=False)
    host = from_host or cfg["host"]
    restored: list[str] = []
    for key, service in services.items():
        restored += restore_service(cfg, tool, key, service, snapshot, host)
    say(f"restored {len(restored)} volume(s): {', '.join(restored)}")
    return 0


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="default: backup.json beside me")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="back up every volume now (the default)")
    p = sub.add_parser("list", help="the snapshots (of SERVICE's volumes), as JSON")
    p.add_argument("service", nargs="?")
    p.add_argument("--from-host", help="snapshots another host made (moving a service)")
    p.add_argument("--repository", help="another repository (the other host's)")
    p = sub.add_parser("restore", help="stop SERVICE, put its volumes back, start it")
    p.add_argument("service", nargs="?")
    p.add_argument("--all", action="store_true", help="every service with backed-up volumes")
    p.add_argument("--snapshot", help="a run (20261125T030000Z) or a snapshot id; default: latest")
    p.add_argument("--from-host", help="snapshots another host made (moving a service)")
    p.add_argument("--repository", help="another repository (the other host's)")
    p = sub.add_parser(INNER)  # started by in_user_namespace(), not by a person
    p.add_argument("job")
    args = parser.parse_args(argv)

    def interrupted(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must not cut a restore
    global ROOTLESS, INSIDE, CONFIG_FILE
    try:
        CONFIG_FILE = args.config or default_config()
        cfg = load_config(CONFIG_FILE)
        ROOTLESS = bool(cfg.get("rootless"))
        if args.command == INNER:
            INSIDE = True
            return cmd_inner(cfg, parse_json(args.job, "the job"))
        if ROOTLESS and os.geteuid() == 0:
            say(
                f"error: {cfg['host']} is rootless: run me as its user "
                f"({cfg.get('user') or 'the ssh_user'}), whose systemd runs the containers"
            )
            return 2
        if not ROOTLESS and os.geteuid() != 0:
            say("error: run me as root (I stop containers and mount volumes)")
            return 2
        if ROOTLESS:  # started from an SSH command rather than the user's manager
            os.environ.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        if args.command in (None, "run"):
            return cmd_backup(cfg)
        if args.command == "list":
            return cmd_list(cfg, args.service, args.from_host, args.repository)
        if args.all == bool(args.service):
            say("error: restore SERVICE, or restore --all")
            return 2
        return cmd_restore(cfg, args.service, args.snapshot, args.from_host, args.repository)
    except Failure as exc:
        say(f"error: {exc}")
        return 1
    except Interrupted as exc:
        say(f"error: interrupted ({exc}); containers that were stopped were started again")
        return 1


if __name__ == "__main__":
    sys.exit(main())
