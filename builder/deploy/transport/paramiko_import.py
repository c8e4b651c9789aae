"""paramiko, with invoke loaded only when it is used.

paramiko.config imports invoke (and with it asyncio and unittest.mock, about 90 ms) for one
thing: running a `Match exec` line of an ssh_config. Every deploy command paid that at start;
here a stand-in module takes invoke's place, and the first attribute asked of it imports the
real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in for a module until an attribute of it is used."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _defer(name: str) -> None:
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _Deferred(name)
    # not installed: paramiko says so itself when a `Match exec` line needs it


_defer("invoke")

import paramiko  # noqa: E402  (after the stand-in, on purpose)

__all__ = ["paramiko"]
