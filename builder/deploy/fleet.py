"""Several hosts in one command: select them (names, @tag, --all), run them in parallel with a
bound, report each as it ends and all of them in a table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from activate.protocol import Switched
from builder.base.errors import BundleError, InputError
from builder.deploy.replies import Misfit, structure
from builder.deploy.results import Pushed, SwitchResult
from builder.stack.load import load_stack


@attrs.frozen
class Outcome:
    host: str
    ok: bool
    seconds: float
    report: dict[str, Any] | None = None  # as JSON: the job's, or a failure's from its error
    error: str | None = None
    skipped: bool = False
    value: Any = None  # the job's typed report, for its printer; a failure's switch report

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "error": self.error,
            "report": self.report,
        }


def host_tags(stacks_dir: Path, host: str) -> tuple[str, ...]:
    tags = load_stack(stacks_dir, host).data.get("host", {}).get("tags", [])
    return tuple(t for t in tags if isinstance(t, str))


def select_hosts(stacks_dir: Path, selectors: list[str], everything: bool) -> list[str]:
    """Host names for `vps1 vps2`, `@monitoring` or `--all`, in a stable order, no repeats."""
    known = sorted(p.stem for p in stacks_dir.glob("*.toml"))
    if everything:
        if selectors:
            raise InputError("give host names or --all, not both")
        return known
    if not selectors:
        raise InputError("name at least one host, a @tag, or --all")
    chosen: list[str] = []
    for sel in selectors:
        if sel.startswith("@"):
            matched = [h for h in known if sel[1:] in host_tags(stacks_dir, h)]
            if not matched:
                raise InputError(f"no host has the tag {sel[1:]!r} (set [host] tags in a stack)")
            chosen += matched
        elif sel in known:
            chosen.append(sel)
        else:
            raise InputError(f"no stack for host {sel!r} (known: {', '.join(known) or 'none'})")
    return list(dict.fromkeys(chosen))


def run_fleet(
    hosts: list[str],
    job: Callable[[str], Any],
    parallel: int,
    fail_fast: bool,
    on_done: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run `job` for each host, at most `parallel` at a time; one failure stops nothing unless
    `fail_fast`, which lets running hosts finish and skips the ones not started."""
    outcomes: dict[str, Outcome] = {}
    stop = threading.Event()

    def one(host: str) -> Outcome:
        if stop.is_set():
            return Outcome(
                host,
                False,
                0.0,
                error="skipped after an earlier failure (--fail-fast)",
                skipped=True,
            )
        t0 = time.monotonic()
        try:
            report = job(host)  # a typed report: to_json() is what --json prints
            return Outcome(host, True, time.monotonic() - t0, report.to_json(), value=report)
        except BundleError as exc:
            if fail_fast:
                stop.set()  # here, not in the caller: the next host may start before it looks
            report = getattr(exc, "report", None)
            seconds = time.monotonic() - t0
            return Outcome(host, False, seconds, report, str(exc), value=_switched(report))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        pending: set[Future[Outcome]] = {pool.submit(one, h) for h in hosts}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes[outcome.host] = outcome
                on_done(outcome)
    return [outcomes[h] for h in hosts]


def _switched(report: Any) -> Switched | None:
    """A failed host's report as a switch's (None: it has none, or another kind)."""
    if not isinstance(report, dict) or "result" not in report:
        return None  # every switch report says how it ended
    try:
        return structure(report, Switched)
    except Misfit:
        return None


def _moved(value: Any) -> tuple[int | None, int | None]:
    """The generations a host went from and to, as its typed report says."""
    if isinstance(value, SwitchResult):
        value = value.reply
    if isinstance(value, Switched):
        return value.from_, value.to
    if isinstance(value, Pushed):
        return None, value.report.generation
    return None, None


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("HOST", "FROM", "TO", "RESULT", "TIME")]
    for o in outcomes:
        failure = o.value.result if isinstance(o.value, Switched) else None
        result = "ok" if o.ok else ("skipped" if o.skipped else str(failure or "failed"))
        from_, to = _moved(o.value)
        rows.append((o.host, str(from_ or "-"), str(to or "-"), result, f"{o.seconds:.1f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
