"""Names typed on the command line are checked whole: a `$` in a pattern let a trailing
newline through, and `\\d` or str.isdigit let digits of other scripts through."""

from __future__ import annotations

import pytest

from tests.build.conftest import Project, small_stack

STACK = small_stack("web1")


@pytest.mark.parametrize("host", ["web1\n", "web١"], ids=["trailing-newline", "arabic-digit"])
def test_a_host_name_that_is_not_one_is_refused_even_when_its_file_exists(
    empty_project: Project, host: str
) -> None:
    empty_project.write(f"{host}.toml", STACK)
    for command in ("check", "build"):
        result = empty_project.run(command, host)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [
            f"error: {host!r} is not a host name: use lower-case letters, digits, '.', '_' or '-'"
        ], result.stderr
    assert not empty_project.bundles.exists() or not any(empty_project.bundles.iterdir())


def test_the_same_stack_under_its_real_name_is_fine(empty_project: Project) -> None:
    empty_project.write("web1.toml", STACK)
    result = empty_project.run("check", "web1")
    assert result.returncode == 0, result.stderr
