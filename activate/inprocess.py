"""A switcher command called inside a running Python, as if it ran as its own process.

The deployer's session (builder/deploy/session.py) starts one python3 on the server per deploy
and calls each command through call(): the command reads `stdin` and its stdout and stderr are
captured, so its replies are the very bytes `python3 -m activate COMMAND` prints. A bundle whose
switcher has this module can be served that way; an older one is run a process per command.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import BinaryIO

from . import faults
from .__main__ import main


def call(argv: Sequence[str], stdin: BinaryIO) -> tuple[int, bytes, bytes]:
    """Run `python3 -m activate ARGV` here: its exit code, stdout and stderr."""
    out, err = io.BytesIO(), io.BytesIO()
    bound = (
        io.TextIOWrapper(stdin, encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True),
    )
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = bound
    try:
        faults.point(f"call-{argv[0] if argv else ''}")  # the tests' hung server, mid-session
        rc = main(list(argv))
    except SystemExit as exc:  # argparse's --help
        rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for stream in bound:  # flushed, and the buffers left open for reading
            stream.flush()
            stream.detach()
    return rc, out.getvalue(), err.getvalue()
