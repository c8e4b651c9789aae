"""Deploy-side benchmarks on a real test server (tests/harness: systemd-nspawn, sshd, podman).

Run as root: .venv/bin/python benchmarks/bench_deploy.py [--runs N] [--only PART ...]
                                                          [--at-commit REV] [--quiet F]

1. bytes: stdin bytes of `bundle push HOST --json` (its `bytes_sent`) for a first push and for a
   push after changing one config file, for the shipped vps1 stack and a 60-service stack, with
   a breakdown of where the bytes go (reconstructed from the generations the way
   builder/deploy/push.py sends them, and checked against `bytes_sent`) and the bytes the host-side
   veth carried towards the server.
2. activate: wall time of `bundle activate` (first activation), `bundle switch` (one change) and
   `bundle rollback` for a two-container stack of busybox web servers.
3. ansible: wall time of a first deploy, a one-change deploy and a deploy with nothing changed
   of 15 web containers, each with one config file, by `bundle switch` and by
   `ansible-playbook` (benchmarks/ansible/), runs interleaved, each tool on its own server
   booted from the same image (benchmarks/bench_versus.py), and where the time of a one-change
   `bundle switch` goes. --services N changes the 15. Needs ansible-core in ANSIBLE_VENV
   (default /var/tmp/bench-ansible-venv):
   python3 -m venv /var/tmp/bench-ansible-venv && /var/tmp/bench-ansible-venv/bin/pip install ansible-core

bundle is measured as built (health gate with its 2 s settle window, dead-man confirmation)
and with `health_settle = 0` and `confirm_timeout = 0`, which does the work the playbook does.
Every figure is the median of N runs of the real command (a new process each time). After
every deploy one page is fetched over HTTP from the server and compared with what it must say.
--at-commit REV measures builder/, activate/ and stacks/ as committed at REV, not the work tree.
Traffic goes only to the registry on this machine and to the test server's 10.200.N.x address.
Everything (server, registry, ssh control masters, temporary folders) is removed at the end,
also after an error. Results: docs/benchmarks.md; benchmarks/run_all.py runs this with every other figure.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_versus
from bench_build import big_stack
from benchkit import (
    IMAGE,
    QUIET,
    REPO,
    SECRETS_ENV,
    TREE,
    VARIANTS,
    Figure,
    Project,
    ansible_missing,
    expect_page,
    machine,
    make_home,
    make_project,
    reset_server,
    run_at_commit,
    settle,
    tree_env,
    variant_keys,
    with_host_keys,
    without_at_commit,
)

if TYPE_CHECKING:
    from builder.bundle.store import Generation
    from tests.harness import Target


def wire_tx(target: Target) -> int:
    """Bytes the host sent to the server on its veth (IP packets, everything included)."""
    return int(Path(f"/sys/class/net/ve-{target.name}/statistics/tx_bytes").read_text())


# ---- 1. bytes of a push ------------------------------------------------------------------------


def gz_tar_size(entries: list[tuple[str, bytes]]) -> int:
    """Size of a gzip tar like builder/deploy/push.py writes (same format and level)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=6) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return len(raw.getvalue())


def switcher_install_size(gen: Generation, manifest: dict[str, Any]) -> int:
    files = {p: gen.read(p) for p in manifest["files"] if p.startswith("activate/")}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    return len(raw.getvalue())


def hashes_in(gen: Generation | None) -> set[str]:
    return {e["sha256"] for e in gen.manifest()["files"].values()} if gen else set()


def breakdown(
    gen: Generation, previous: Generation | None, report: dict[str, Any]
) -> dict[str, int]:
    """Where the stdin bytes of one push go, computed the way builder/deploy/push.py sends them.

    The server holds exactly `previous` (or nothing) before the push. A report without `base`
    comes from a builder that predates bases and deltas (--at-commit of an older commit)."""
    from builder.deploy import push

    manifest = gen.manifest()
    hashes = hashes_in(gen)
    switcher = {e["sha256"] for p, e in manifest["files"].items() if p.startswith("activate/")}
    delta: bytes | None = None
    if "base" not in report:  # every hash asked, the full manifest, the switcher sent twice
        asked = hashes
        request = json.dumps(sorted(asked)).encode()
        missing = hashes - hashes_in(previous)
    else:
        base = previous if report["base"] else None
        delta = push.manifest_delta(base, gen) if base is not None else None
        asked = hashes - hashes_in(base)
        request = push.have_request(report["base"], asked)
        missing = asked - hashes_in(previous) - switcher
    skipped = report["already_present"] and "base" in report  # the check found it there
    if skipped:
        asked, request, missing = set(), b"", set()

    def receive_size(objects: set[str]) -> int:
        if skipped:
            return 0
        if delta is None:
            return len(push.stream(gen, manifest, objects))
        return len(push.stream(gen, manifest, objects, delta))

    by_hash: dict[str, str] = {}
    for path, entry in sorted(manifest["files"].items()):
        by_hash.setdefault(entry["sha256"], path)
    manifest_only = receive_size(set())
    parts = {
        "switcher install (gzip tar of activate/)": (
            switcher_install_size(gen, manifest) if report["switcher_sent"] else 0
        ),
        f"have: request naming {len(asked)} hashes": len(request),
        f"receive: gzip tar, {'delta' if delta else 'full'} manifest part": manifest_only,
        "receive: gzip tar, objects part": receive_size(missing) - manifest_only,
    }
    info = {
        "objects": len(missing),
        "objects raw bytes": sum(len(gen.read(by_hash[h])) for h in missing),
        "manifest.json raw bytes": len(gen.read("manifest.json")),
        "files in manifest": len(manifest["files"]),
    }
    if delta:
        info["manifest.delta.json raw bytes"] = len(delta)
    return {**parts, **{f"({k})": v for k, v in info.items()}}


def wireguard_keys() -> tuple[str, str]:
    """A throwaway WireGuard key pair (private, public), as `wg genkey | wg pubkey` makes."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(public).decode()


def secret_value(p: Project, host: str, name: str) -> str:
    """A throwaway value of the right shape. For a WireGuard private key, the stack's
    [wireguard] public_key is replaced with the matching one (in the copy of the stack)."""
    if "wireguard" in name and name.endswith("private_key"):
        private, public = wireguard_keys()
        toml = p.stacks / f"{host}.toml"
        text = re.sub(
            r'(\[wireguard\][^\[]*?public_key = ")[^"]*(")',
            lambda m: m.group(1) + public + m.group(2),
            toml.read_text(),
            count=1,
        )
        toml.write_text(text)
        return private + "\n"
    return f"bench-{name}\n"


def set_secrets(p: Project, host: str) -> None:
    """Give every secret the stack names a throwaway value, so its generations can be pushed."""
    built = p.json("build", host)
    gen = p.generation(host, built["generation"])
    names = sorted((gen.manifest().get("secrets") or {}).keys())
    for name in names:
        subprocess.run(
            [sys.executable, "-m", "builder.cli", "secrets", "set", host, name],
            input=secret_value(p, host, name),
            cwd=p.root,
            env={"PATH": "/usr/bin:/bin", "HOME": str(p.home), **SECRETS_ENV, **tree_env()},
            capture_output=True,
            text=True,
            check=True,
        )
    shutil.rmtree(p.root / "bundles")


def change_one_config(stacks: Path, rel: str, line: str) -> None:
    path = stacks / "templates" / rel
    path.write_text(path.read_text() + line)


def push_pair(p: Project, target: Target, host: str, change: Callable[[], None]) -> dict[str, Any]:
    target.ssh("rm -rf /var/lib/bundle")  # a server that has never seen a bundle
    p.json("build", host)
    tx0 = wire_tx(target)
    first = p.json("push", host)
    tx1 = wire_tx(target)
    change()
    p.json("build", host)
    stat = p.json("diff", host, "1", "2")
    tx2 = wire_tx(target)
    second = p.json("push", host)
    tx3 = wire_tx(target)
    again = p.json("push", host, "--generation", "2")  # nothing missing: the floor of a push
    tx4 = wire_tx(target)
    if len(stat["files"]) != 1 or second["objects_sent"] != 1 or not again["already_present"]:
        raise RuntimeError(f"{host}: expected one changed file: {stat} {second} {again}")
    gen1, gen2 = p.generation(host, 1), p.generation(host, 2)
    b1 = breakdown(gen1, None, first)
    b2 = breakdown(gen2, gen1, second)
    b3 = breakdown(gen2, gen2, again)
    for report, parts in ((first, b1), (second, b2), (again, b3)):
        counted = sum(v for k, v in parts.items() if not k.startswith("("))
        if counted != report["bytes_sent"]:
            raise RuntimeError(f"breakdown {counted} != bytes_sent {report['bytes_sent']}")
    return {
        "host": host,
        "first": first,
        "second": second,
        "wire_first": tx1 - tx0,
        "wire_second": tx3 - tx2,
        "again": again,
        "wire_again": tx4 - tx3,
        "diff": stat,
        "breakdown_first": b1,
        "breakdown_second": b2,
        "breakdown_again": b3,
        "argv_bootstrap": len(bootstrap_script().encode()),
    }


def bootstrap_script() -> str:
    from builder.deploy.remote import BOOTSTRAP

    return BOOTSTRAP


def bench_bytes(work: Path, target: Target, home: Path) -> list[dict[str, Any]]:
    results = []
    vps1 = make_project(work, "vps1", home)
    shutil.rmtree(vps1.stacks)
    shutil.copytree(TREE / "stacks", vps1.stacks)
    set_secrets(vps1, "vps1")
    results.append(
        push_pair(
            vps1,
            target,
            "vps1",
            lambda: change_one_config(
                vps1.stacks, "nextcloud/zz-bundle.ini.j2", "max_execution_time = 600\n"
            ),
        )
    )
    big = make_project(work, "big", home)
    (big.stacks / "templates").mkdir()
    # bench_build's page, plus a line that only svc7's copy has, so one rendered file can change
    (big.stacks / "templates/page.j2").write_text(
        "<h1>{{ vars.greeting }} from {{ service }}</h1>\n"
        "{% if service == 'svc7' %}<p>{{ vars.note }}</p>\n{% endif %}"
    )
    text = big_stack(60, "1.27.3").replace(
        'greeting = "hi"\n', 'greeting = "hi"\nnote = "one"\n', 1
    )
    (big.stacks / "big.toml").write_text(text)

    def change_big() -> None:
        path = big.stacks / "big.toml"
        path.write_text(path.read_text().replace('note = "one"', 'note = "two"', 1))

    results.append(push_pair(big, target, "big", change_big))
    # the server keeps what it received; the other parts use their own state
    target.ssh("rm -rf /var/lib/bundle")
    return results


# ---- 2. activate, switch, rollback -------------------------------------------------------------


def bench_activate(work: Path, target: Target, home: Path, runs: int) -> dict[str, Any]:
    return {
        variant: activate_variant(work / f"web1-{i}", target, home, runs, keys)
        for i, (variant, keys) in enumerate(VARIANTS.items())
    }


def activate_variant(
    work: Path, target: Target, home: Path, runs: int, keys: str
) -> dict[str, Any]:
    from tests.server.conftest import WEB_STACK

    p = make_project(work, "web1", home)
    (p.stacks / "templates/web").mkdir(parents=True)
    (p.stacks / "web1.toml").write_text(with_host_keys(WEB_STACK, keys))
    (p.stacks / "templates/web/index.html.j2").write_text(
        "{{ vars.message }} from {{ host.name }}\n"
    )
    p.json("build", "web1")
    first = Figure("bundle activate (first activation)")
    switch = Figure("bundle switch (one config file changed)")
    rollback = Figure("bundle rollback")
    server_seconds: dict[str, list[float]] = {"first": [], "switch": [], "rollback": []}
    for _ in range(runs):
        reset_server(target)
        p.json("push", "web1", "--generation", "1")
        t, report = p.timed_json("activate", "web1", "--generation", "1")
        if report.get("result") != "ok":
            raise RuntimeError(f"activate: {report}")
        first.times.append(t)
        server_seconds["first"].append(report.get("seconds", float("nan")))
        expect_page(target, 8080, "first from web1\n")
    toml = p.stacks / "web1.toml"
    for i in range(runs):
        text = re.sub(r'message = "[^"]*"', f'message = "change {i}"', toml.read_text())
        toml.write_text(text)
        settle(target)
        t, report = p.timed_json("switch", "web1")
        if report.get("result") != "ok" or report["plan"]["restart"] != ["web.container"]:
            raise RuntimeError(f"switch: {report}")
        switch.times.append(t)
        server_seconds["switch"].append(report.get("seconds", float("nan")))
        expect_page(target, 8080, f"change {i} from web1\n")
        settle(target)
        t, report = p.timed_json("rollback", "web1")
        if report.get("result") != "ok" or report["plan"]["restart"] != ["web.container"]:
            raise RuntimeError(f"rollback: {report}")
        rollback.times.append(t)
        server_seconds["rollback"].append(report.get("seconds", float("nan")))
        # generation 1 says "first", generation k > 1 was built for "change k-2"
        back = "first" if report["to"] == 1 else f"change {report['to'] - 2}"
        expect_page(target, 8080, f"{back} from web1\n")
    reset_server(target)
    return {"figures": [first, switch, rollback], "server_seconds": server_seconds}


# ---- main --------------------------------------------------------------------------------------


def print_bytes(results: list[dict[str, Any]]) -> None:
    print("\n## bytes sent by `bundle push` (stdin bytes, the report's bytes_sent)")
    print(
        f"{'stack':<8} {'files':>6} {'first push':>11} {'one change':>11} {'ratio':>8}  wire (veth tx) first / one change"
    )
    for r in results:
        a, b = r["first"]["bytes_sent"], r["second"]["bytes_sent"]
        print(
            f"{r['host']:<8} {r['first']['files']:>6} {a:>11} {b:>11} {b / a:>8.2%}  "
            f"{r['wire_first']} / {r['wire_second']}"
        )
    for r in results:
        print(
            f"{r['host']}: push of a generation the server already has: "
            f"{r['again']['bytes_sent']} bytes stdin, {r['wire_again']} bytes on the wire"
        )
    for r in results:
        first, second = r["first"]["bytes_sent"], r["second"]["bytes_sent"]
        print(
            f"{r['host']}: one-change push sent against base {r['second'].get('base')}: "
            f"{second} bytes, {second / first:.2%} of the first push"
        )
    for r in results:
        changed = ", ".join(f"{d['path']} ({d['status']})" for d in r["diff"]["files"])
        print(f"\n{r['host']}: generations 1 -> 2 differ in: {changed}")
        print(
            f"  python3 -c BOOTSTRAP on the command line of each push (not stdin): {r['argv_bootstrap']} bytes"
        )
        labels = (("first push", "first"), ("one change", "second"), ("again", "again"))
        for label, key in labels:
            print(f"  {label}:")
            for k, v in r[f"breakdown_{key}"].items():
                print(f"    {k:<52} {v:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--quiet",
        type=float,
        default=QUIET.threshold,
        metavar="F",
        help="start a timed run only when the CPUs were at most this busy for 1 s (1: never wait)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=("bytes", "activate", "ansible"),
        default=["bytes", "activate", "ansible"],
    )  # fmt: skip
    parser.add_argument(
        "--services", type=int, default=15, help="web containers in the ansible part"
    )
    parser.add_argument(
        "--at-commit",
        metavar="REV",
        help="measure builder/, activate/ and stacks/ as committed at REV (git archive), "
        "not the work tree",
    )
    args = parser.parse_args()
    QUIET.threshold = args.quiet
    if args.at_commit and "BENCH_TREE" not in os.environ:
        argv = without_at_commit(sys.argv[1:], args.at_commit)
        sys.exit(run_at_commit(__file__, args.at_commit, argv))
    from tests.harness import Registry, Target

    if "ansible" in args.only and (missing := ansible_missing()):
        sys.exit(missing)
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-deploy-"))
    results: dict[str, Any] = {}
    try:
        with Registry.start() as reg:
            reg.push_busybox("bundle/web", "1.0.0")
            with Target(registry=reg) as target:
                home = make_home(
                    work,
                    target,
                    ["vps1.example.org", "big.example.org", "web1-test"],
                )
                versions = {
                    "podman (server)": target.ssh("podman --version").stdout.strip(),
                    "systemd (server)": target.ssh("systemctl --version").stdout.splitlines()[0],
                    "python3 (server)": target.ssh("python3 --version").stdout.strip(),
                    "sshd (server)": target.ssh("sshd -V 2>&1 || true").stdout.strip(),
                }
                target.ssh(f"podman pull -q {IMAGE}")  # every timed run starts with the image there
                results["load_before"] = Path("/proc/loadavg").read_text().split()[:3]
                if "bytes" in args.only:
                    results["bytes"] = bench_bytes(work, target, home)
                if "activate" in args.only:
                    results["activate"] = bench_activate(work, target, home, args.runs)
                if "ansible" in args.only:
                    with bench_versus.servers(reg, [target]) as targets:
                        results["ansible"] = bench_versus.compare(
                            work / "versus", targets, args.services, args.runs, args.runs,
                            noop=True, extras=True,
                        )  # fmt: skip
                results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    commit = os.environ.get("BENCH_COMMIT")
    print(f"code measured: {f'commit {commit}' if commit else f'the work tree at {REPO}'}")
    import builder

    print(f"builder imported from {Path(builder.__file__).parent}")
    for k, v in versions.items():
        print(f"{k}: {v}")
    print(
        f"load average (1, 5, 15 min) at the start: {' '.join(results['load_before'])}, "
        f"at the end: {' '.join(results['load_after'])}"
    )
    print(
        f"before each timed run waited for CPUs <= {QUIET.threshold:.0%} busy: "
        f"{QUIET.runs} runs, {QUIET.waited:.0f} s waited in all, "
        f"{QUIET.gave_up} started busy after {QUIET.max_wait:.0f} s"
    )
    print(f"runs per figure: {args.runs}; median (min–max) of wall time, a new process each run")
    if "bytes" in results:
        print_bytes(results["bytes"])
    if "activate" in results:
        print("\n## two busybox web containers + a volume (tests/server WEB_STACK)")
        for variant, act in results["activate"].items():
            print(f"bundle {variant} ({variant_keys(variant)}):")
            for f, key in zip(act["figures"], ("first", "switch", "rollback"), strict=True):
                server = statistics.median(act["server_seconds"][key])
                print(f"    {f.name:<44} {f.cell():<28} switcher's own time: {server:.2f} s")
    if "ansible" in results:
        bench_versus.print_compare(results["ansible"])


if __name__ == "__main__":
    main()
