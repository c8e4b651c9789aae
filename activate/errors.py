"""Errors are values with a message for a person; the CLI turns them into one line."""

from __future__ import annotations


class SwitcherError(Exception):
    """A failure the CLI reports as one line on stderr with its exit code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(SwitcherError):
    """The caller asked for something impossible or sent something malformed (exit 2)."""

    exit_code = 2


class Failed(SwitcherError):
    """The operation was valid but could not be carried out (exit 1)."""

    exit_code = 1


class Reported(Failed):
    """A failure that comes with a report of what was done (printed on stdout as usual)."""

    def __init__(self, message: str, report: dict[str, object], exit_code: int = 1) -> None:
        super().__init__(message)
        self.report = report
        self.exit_code = exit_code


class RolledBack(Reported):
    """Activation failed after changing the server and the old generation was put back."""

    def __init__(self, message: str, report: dict[str, object]) -> None:
        super().__init__(message, report)
