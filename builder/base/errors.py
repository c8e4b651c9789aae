"""Errors are values with a message for a person; the CLI turns them into lines and exit codes."""

from __future__ import annotations

import attrs


@attrs.frozen
class Problem:
    """One thing wrong with the input, located as precisely as we know."""

    message: str
    file: str | None = None
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None and where:
            where = f"{where}:{self.line}"
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        return f"{where}: {self.message}" if where else self.message


class BundleError(Exception):
    """An operation failed (exit 1) or the input is wrong (exit 2), with a one-line message."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(BundleError):
    """The user's input is wrong: exit 2."""

    exit_code = 2


class StackError(InputError):
    """A stack has one or more problems; all of them are reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=_problem_order)
        super().__init__("\n".join(str(p) for p in self.problems))


def _problem_order(p: Problem) -> tuple[str, int, str, str]:
    return (p.file or "", p.line or 0, p.key or "", p.message)
