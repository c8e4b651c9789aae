"""Fault injection for the crash tests (tests/faults/): does nothing unless BUNDLE_FAULT is set.

    BUNDLE_FAULT=POINT        the switcher kills itself (SIGKILL) when it reaches POINT
    BUNDLE_FAULT=POINT:stop   it stops itself (SIGSTOP) there; the test then cuts the power,
                              drops the connection or kills it from outside, or lets it go on
                              with SIGCONT

The points are the steps of a switch that the journal (STATE/pending.json) records, named in
activation.STEPS, plus receive-after-object, receive-before-publish and receive-after-publish.
"""

from __future__ import annotations

import os
import signal

ENV = "BUNDLE_FAULT"


def point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    where, _, how = wanted.partition(":")
    if where == name:
        os.kill(os.getpid(), signal.SIGSTOP if how == "stop" else signal.SIGKILL)
