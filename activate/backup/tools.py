"""restic and kopia behind one `Tool`: open (or create) the repository, back up a folder,
list, restore and forget snapshots. Secrets go to the tools in their environment only."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Failed
from .commands import last_line, run, say
from .config import json_records, parse_json, read_secret
from .paths import cache_root, home, stable_path


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
        raise Failed(f"{repository}: write s3:https://ENDPOINT/BUCKET[/PREFIX]")
    return {"endpoint": parts[0], "bucket": parts[1], "prefix": "/".join(parts[2:]), "tls": tls}


class Tool:
    name = ""

    def __init__(self, cfg: dict[str, Any], repository: str | None = None) -> None:
        self.cfg = cfg
        self.host = cfg["host"]
        self.repository = repository or cfg["repository"]
        self.rootless = bool(cfg.get("rootless"))

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
            raise Failed(
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
        env["RESTIC_CACHE_DIR"] = str(cache_root(self.rootless) / "restic")
        return env

    def open(self, create: bool) -> None:
        found = self.run(["cat", "config"], "opening the repository", check=False)
        if found.returncode == 0:
            return
        reason = last_line(found.stderr, found.returncode)
        if not create:
            raise Failed(f"cannot open the restic repository {self.repository}: {reason}")
        made = self.run(["init"], "creating the repository", check=False)
        if made.returncode != 0:
            raise Failed(f"cannot open the restic repository {self.repository}: {reason}")
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
            with contextlib.suppress(Failed):  # progress lines; only the summary counts
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
        env["KOPIA_CACHE_DIRECTORY"] = str(cache_root(self.rootless) / "kopia")
        env["KOPIA_LOG_DIR"] = str(cache_root(self.rootless) / "kopia-logs")
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
                raise Failed(f"cannot open the kopia repository {self.repository}: {reason}")
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
                raise Failed(f"cannot open the kopia repository {self.repository}: {reason}")
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
        raise Failed(f"unknown backup tool {cfg.get('tool')!r}")
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
