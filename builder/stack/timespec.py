"""Time values of a stack, checked against the grammar of the program that reads them.

* `calendar_problem`: systemd.time(7) calendar events (OnCalendar=), as `systemd-analyze
  calendar` accepts them; tests/build/test_timespec.py proves agreement on a corpus.
* `timespan_problem`: systemd time spans (TimeoutStartSec=, RandomizedDelaySec=), as
  `systemd-analyze timespan` accepts them.
* `duration_problem`: Go durations ("1m30s"), what podman reads for its health check timings.

Each returns None for a value its reader takes, or a message for a person.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cache

CALENDAR_HINT = 'like "daily", "Mon..Fri 06:00", "*-*-* 03:30:00" (see `man systemd.time`)'
TIMESPAN_HINT = 'like "90s", "5min", "1h 30min" or "2d"'
DURATION_HINT = 'a Go duration like "30s", "1m30s" or "2h"'

# systemd's unit table, in its order: the first name the text starts with wins
_SPAN_UNITS = (
    ("seconds", 10**6),
    ("second", 10**6),
    ("sec", 10**6),
    ("s", 10**6),
    ("minutes", 60 * 10**6),
    ("minute", 60 * 10**6),
    ("min", 60 * 10**6),
    ("months", 2629800 * 10**6),
    ("month", 2629800 * 10**6),
    ("M", 2629800 * 10**6),
    ("msec", 10**3),
    ("ms", 10**3),
    ("m", 60 * 10**6),
    ("hours", 3600 * 10**6),
    ("hour", 3600 * 10**6),
    ("hr", 3600 * 10**6),
    ("h", 3600 * 10**6),
    ("days", 86400 * 10**6),
    ("day", 86400 * 10**6),
    ("d", 86400 * 10**6),
    ("weeks", 604800 * 10**6),
    ("week", 604800 * 10**6),
    ("w", 604800 * 10**6),
    ("years", 31557600 * 10**6),
    ("year", 31557600 * 10**6),
    ("y", 31557600 * 10**6),
    ("usec", 1),
    ("us", 1),
    ("µs", 1),
    ("μs", 1),
)
_SPAN_NUMBER = re.compile(r"\+?([0-9]*)(?:\.([0-9]+))?")
_SPACE = " \t"
_USEC_MAX = 2**64 - 2  # one below systemd's "infinity"


def timespan_usec(text: str) -> int | None:
    """Microseconds in a systemd time span, or None when systemd would refuse it."""
    rest = text.lstrip(_SPACE)
    if rest.startswith("infinity"):
        return _USEC_MAX + 1 if not rest[8:].strip(_SPACE) else None
    total, seen = 0, False
    while True:
        rest = rest.lstrip(_SPACE)
        if not rest:
            return total if seen and total <= _USEC_MAX else None
        m = _SPAN_NUMBER.match(rest)
        whole, frac = (m.group(1), m.group(2)) if m else ("", None)
        if not m or (not whole and frac is None) or rest[m.end() : m.end() + 1] == ".":
            return None
        rest = rest[m.end() :].lstrip(_SPACE)
        unit = next(((n, f) for n, f in _SPAN_UNITS if rest.startswith(n)), ("", 10**6))
        rest = rest[len(unit[0]) :]
        total += int(whole or 0) * unit[1] + (int(frac) * unit[1] // 10 ** len(frac) if frac else 0)
        seen = True


def timespan_problem(text: str) -> str | None:
    if timespan_usec(text) is None:
        return f"{text!r} is not a systemd time span: write it {TIMESPAN_HINT}"
    return None


_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_GO_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_GO_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_GO_MAX = 2**63 - 1


def duration_ns(text: str) -> int | None:
    """Nanoseconds in a Go duration, as time.ParseDuration reads it (a sign allowed), or None."""
    sign = -1 if text[:1] == "-" else 1
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    pos, total = 0, 0
    while pos < len(body):
        m = _GO_PART.match(body, pos)
        if not m or not (m.group(1) or m.group(2)):
            return None
        unit = _GO_UNITS[m.group(3)]
        total += int(m.group(1) or 0) * unit
        frac = (m.group(2) or "")[:18]  # Go stops reading digits that no longer count
        if frac:
            total += int(float(int(frac)) * (unit / 10 ** len(frac)))  # Go rounds here as float64
        pos = m.end()
    if not body or total > _GO_MAX + (sign < 0):
        return None
    return sign * total


def duration_problem(text: str, least_ns: int = 0, off: str | None = None) -> str | None:
    """`least_ns`: the shortest podman takes (1 for a timeout); `off`: a word it takes instead."""
    if off is not None and text == off:
        return None
    ns = duration_ns(text)
    if ns is None:
        also = f', or "{off}"' if off else ""
        return f"{text!r} is not a duration: write {DURATION_HINT}{also}"
    if ns < 0:
        return f"{text!r} is negative: podman needs a duration of 0s or more"
    if ns < least_ns:
        return f"{text!r} is too short: podman needs more than 0s"
    return None


# --- calendar events ---------------------------------------------------------------------

_SPECIAL = {
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "anually",
    "quarterly",
    "semiannually",
    "semi-annually",
    "biannually",
    "bi-annually",
}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = tuple((name, i) for i, d in enumerate(_DAYS) for name in (d, d[:3]))
_ITEM = re.compile(
    r"([0-9]+)(?:\.([0-9]+))?(?:\.\.([0-9]+)(?:\.([0-9]+))?)?(?:/([0-9]+)(?:\.([0-9]+))?)?"
)


class _Refused(Exception):
    pass


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def calendar_problem(text: str) -> str | None:
    try:
        _calendar(text)
    except _Refused:
        return f"{text!r} is not a systemd calendar event: write it {CALENDAR_HINT}"
    return None


def _calendar(text: str) -> None:
    if not text or text[0] in _SPACE:
        raise _Refused
    if text.startswith("@"):
        if not re.fullmatch("[0-9]+", text[1:]):
            raise _Refused
        return
    head, space, last = text.rpartition(" ")
    if space and (last.lower() == "utc" or last in _zones()):
        text = head
    if text.lower() in _SPECIAL:
        return
    rest = _weekdays(text)
    rest = _date(rest.lstrip(" "))
    _time(rest.lstrip(" "))


def _weekdays(text: str) -> str:
    """Skip a leading weekday list (Mon,Wed..Fri); what follows it."""
    rest, first = text, True
    while True:
        day = _day(rest)
        if day is None:
            if first:
                return text
            raise _Refused
        first = False
        rest = rest[len(day[0]) :]
        for sep in ("..", "-"):
            if rest.startswith(sep):
                end = _day(rest[len(sep) :])
                if end is None or end[1] < day[1]:
                    raise _Refused
                rest = rest[len(sep) + len(end[0]) :]
                break
        if rest.startswith(","):
            rest = rest[1:]
            if not rest or rest.startswith(" "):
                return rest
            continue
        if rest and not rest.startswith(" "):
            raise _Refused
        return rest


def _day(text: str) -> tuple[str, int] | None:
    low = text.lower()
    return next(((text[: len(n)], i) for n, i in _DAY_NAMES if low.startswith(n)), None)


def _date(text: str) -> str:
    """Skip a date ([YEAR-]MONTH-DAY or MONTH~DAY); what follows it."""
    first, rest = _chain(text, "year")
    if first is None or not rest or rest[0] not in "-~":
        if rest.startswith(":") or not text:
            return text  # a time, or nothing: no date
        raise _Refused
    sep1 = rest[0]
    second, rest = _chain(rest[1:], "day")
    if second is None:
        raise _Refused
    if sep1 == "-" and rest[:1] in ("-", "~"):
        third, rest = _chain(rest[1:], "day")
        if third is None:
            raise _Refused
        _check(first, "year")
        _check(second, "month")
        _check(third, "day")
    else:
        _check(first, "month")
        _check(second, "day")
    if rest and not rest.startswith(" "):
        raise _Refused
    return rest


def _time(text: str) -> None:
    if not text:
        return
    parts: list[list[tuple[str, ...]]] = []
    rest = text
    while True:
        chain, rest = _chain(rest, "second" if len(parts) == 2 else "hour")
        if chain is None:
            raise _Refused
        parts.append(chain)
        if rest.startswith(":") and len(parts) < 3:
            rest = rest[1:]
            continue
        break
    if rest or len(parts) < 2:
        raise _Refused
    for chain, field in zip(parts, ("hour", "minute", "second"), strict=False):
        _check(chain, field)


def _chain(text: str, field: str) -> tuple[list[tuple[str, ...]] | None, str]:
    """One field's comma list: '*' or N[..M][/R] items; (items, rest) or (None, text)."""
    items: list[tuple[str, ...]] = []
    rest = text
    while True:
        if rest.startswith("*"):
            items.append(("*",))
            rest = rest[1:]
        else:
            m = _ITEM.match(rest)
            if not m:
                return None, text
            if field != "second" and any(m.group(g) for g in (2, 4, 6)):
                return None, text
            items.append(tuple(m.groups()))
            rest = rest[m.end() :]
        if not rest.startswith(","):
            return items, rest
        rest = rest[1:]


_RANGE = {"year": (1970, 2199), "month": (1, 12), "day": (1, 31), "hour": (0, 23)}
_RANGE |= {"minute": (0, 59), "second": (0, 59)}


def _check(chain: list[tuple[str, ...]], field: str) -> None:
    low, high = _RANGE[field]
    for item in chain:
        if item == ("*",):
            continue
        start, start_frac, end, end_frac, rep, rep_frac = item
        values = [int(start)] + ([int(end)] if end is not None else [])
        if field == "year":
            values = [v + 2000 if v < 70 else v + 1900 if v < 100 else v for v in values]
        if any(not low <= v <= high for v in values):
            raise _Refused
        if end is not None and (values[1], end_frac or "") < (values[0], start_frac or ""):
            raise _Refused
        if rep is not None and int(rep) == 0 and not (rep_frac or "").strip("0"):
            raise _Refused
