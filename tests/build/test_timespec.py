"""The build's time checks agree with systemd itself: every expression of the corpus is given
to the real `systemd-analyze calendar` / `systemd-analyze timespan` and to builder.stack.timespec,
and both must accept it or both refuse it."""

from __future__ import annotations

import subprocess

import pytest

from builder.stack.timespec import calendar_problem, timespan_problem

CALENDAR = (
    # special names, in any case, with a zone
    "daily", "Daily", "DAILY", "minutely", "hourly", "weekly", "monthly", "yearly",
    "annually", "anually", "quarterly", "semiannually", "semi-annually", "biannually",
    "bi-annually", "daily UTC", "daily ", " daily", "every tuesday", "hourly minutely",
    "Mon daily", "UTC", "", " ", "*",
    # weekdays
    "Mon", "mon", "Monday", "Mon..Fri", "Mon-Fri", "Mon,Wed", "Mon, Wed", "Mon..Wed,Fri",
    "Mon..Mon", "Fri..Mon", "Sun..Sat", "sat..sun", "Sunday..Saturday", "Mon,Mon",
    "Mon,,Tue", "Mon,", "Mond", "Mo", "M", "Mon ", "Mon..Fri-Sun", "Mon  12:00", "12:00 Mon",
    # dates
    "*-*-*", "*-*-01 03:00", "*-02-30", "*-02~03", "*-05~07/1", "2025-01-01", "1969-01-01",
    "2199-12-31", "2200-01-01", "70-01-01", "25-01-01", "0-01-01", "69-01-01", "99-01-01",
    "100-01-01", "02025-01-01", "2025-13-01", "2025-00-01", "2025-01-00", "2025-01-32",
    "2025-1-1", "01-01", "*-1..3-1", "*-*-*~1", "*-*~1", "*~01", "2025-02~1", "01,02-01",
    "*-01-1,15", "*-01-01..03", "1/2-01-01", "2025..2026-01-01", "*-*-*/2", "*-*-1..10/2",
    "Thu,Fri 2024-*-1,5 11:12:13", "Wed..Sat,Tue 12-10-15 1:2:3", "Sat,Sun *-*-* 10:00",
    # times
    "00:00", "0:0", "12:00:00.5", "12:00:60", "12:00:61", "24:00", "23:59:59", "*:*",
    "*:0/15", "*:00/15", "0/2:00", "*/2:00", "1..10/2:00", "*:*:*", "1,2:00", "1..3:00",
    "3..1:00", "00:00/5", "00:00:00/0.5", "12", "12:00:00:00", "*-*-* 00:00:59.999999",
    "00:00:00.1234567", "00:00:5.", "00:00:.5", "0..0:00", "1..1:00/0", "00:00/0", "*:*/0",
    "00:00..12:00", "0,6,12,18:00", "12:00:00/20", "12:00:00.0/0.5", "-1:00", "+1:00",
    "01:+1", "*:*:*:*", "Mon-Fri 9..17:00", "*-*-* 12:00 ", "Tue 12:00", "*-*-* 00:00:00",
    "mon 00:00", "*-*-* *:*:*",
    # zones and timestamps
    "Mon *-*-* 12:00 UTC", "12:00 UTC", "12:00 utc", "12:00 Europe/Berlin",
    "12:00 Mars/Olympus", "12:00 Etc/UTC", "12:00 GMT", "12:00 Europe/berlin",
    "12:00 europe/Berlin", "12:00 UTC UTC", "Mon UTC", "*-*-* *:*:* UTC", "@1700000000",
    "@", "@-1", "@abc", "@1.5", " Mon", " 12:00", " *-*-*", "Mon   *-*-*   12:00",
)  # fmt: skip

TIMESPAN = (
    "5", "5s", "5 s", "5sec", "5secs", "5m30", "1.5h", "1.h", ".5s", "1.5.5s", "+5s", "-5s",
    "5months", "5M", "5mo", "5min", "5 min 3 s", "infinity", " infinity ", "infinity5", "",
    " ", "5us", "5µs", "5μs", "5ns", "5nsec", "1y", "1years", "1yr", "2w", "2weeks", "3d",
    "3days", "1hr", "1 hours", "0", "00", "5S", "5H", "5D", "18446744073709551615s",
    "99999999999d", "5sx", "1e3", "0x10", "5 m s", "2h", "6h", "30min", "1h 30min", "5ms",
    "5msec", "1d2h3min4s", "3 weeks", "2.5d", "1week", "1minutes", "1hours",
)  # fmt: skip


def systemd_accepts(kind: str, text: str) -> bool:
    result = subprocess.run(
        ["systemd-analyze", kind, text], capture_output=True, text=True, check=False, timeout=60
    )
    return result.returncode == 0


@pytest.mark.parametrize("text", CALENDAR)
def test_calendar_agrees_with_systemd(text: str) -> None:
    assert (calendar_problem(text) is None) == systemd_accepts("calendar", text), text


@pytest.mark.parametrize("text", TIMESPAN)
def test_timespan_agrees_with_systemd(text: str) -> None:
    assert (timespan_problem(text) is None) == systemd_accepts("timespan", text), text


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = {calendar_problem(t) is None for t in CALENDAR}
    assert verdicts == {True, False}
    assert {timespan_problem(t) is None for t in TIMESPAN} == {True, False}
