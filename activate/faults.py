"""Fault injection for the crash tests (tests/faults/): does nothing unless a test asks.

    BUNDLE_FAULT=POINT        the switcher kills itself (SIGKILL) when it reaches POINT
    BUNDLE_FAULT=POINT:stop   it stops itself (SIGSTOP) there; the test then cuts the power,
                              drops the connection or kills it from outside, or lets it go on
                              with SIGCONT

The same text in the file /run/bundle-test-fault works like the variable, for switchers the
test cannot hand an environment to (one started over SSH, or as a transient systemd unit);
/run is emptied at every boot.

The points are the steps of a switch that its journal records (activate/journal.py:
switch-started … switch-done, switch-restoring), install-wrote-file, switch-starting, and
receive-after-object, receive-before-publish, receive-after-publish.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "BUNDLE_FAULT"
FILE = Path("/run/bundle-test-fault")


def point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        try:
            wanted = FILE.read_text(encoding="utf-8").strip()
        except OSError:
            return
    where, _, how = wanted.partition(":")
    if where == name:
        os.kill(os.getpid(), signal.SIGSTOP if how == "stop" else signal.SIGKILL)
