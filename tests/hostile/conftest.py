"""The switcher's state folder and a ROOT standing in for a server, as in tests/activate/."""

from tests.activate.conftest import root, state

__all__ = ["root", "state"]
