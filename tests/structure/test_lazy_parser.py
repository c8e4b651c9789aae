"""`bundle COMMAND` builds only that command's arguments: the same command line either way."""

from __future__ import annotations

import argparse

import pytest

from builder.cli.parser import command_named, make_parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def shape(parser: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """Every argument as parsing sees it, nested commands (`secrets set`) included."""
    rows: list[tuple[object, ...]] = []
    for a in parser._actions:
        rows.append(
            (type(a).__name__, tuple(a.option_strings), a.dest, a.nargs, a.default, a.required)
        )
        if isinstance(a, argparse._SubParsersAction):
            for name, inner in sorted(a.choices.items()):
                rows.append((name, *shape(inner)))
    return rows


FULL = make_parser()


@pytest.mark.parametrize("name", sorted(subcommands(FULL)))
def test_each_command_alone_parses_as_in_the_whole_parser(name: str) -> None:
    alone = subcommands(make_parser(only=name))
    assert list(alone) == [name]
    assert shape(alone[name]) == shape(subcommands(FULL)[name])


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["build", "vps1"], "build"),
        (["-q", "build", "vps1"], "build"),
        (["--stacks", "push", "build", "vps1"], "build"),  # push is the folder here
        (["--stack", "push", "build", "vps1"], "build"),  # argparse's abbreviation too
        (["--stacks=push", "build"], "build"),
        (["--help", "build"], None),
        (["--version"], None),
        (["completion", "bash"], None),  # the completion reads every command
        ([], None),
    ],
)
def test_the_command_word_is_found_past_the_top_level_options(
    argv: list[str], named: str | None
) -> None:
    assert command_named(argv) == named


def test_an_unknown_word_builds_every_command_so_the_error_can_name_the_nearest() -> None:
    assert len(subcommands(make_parser(only="biuld"))) == len(subcommands(FULL))


def test_the_quick_build_check_names_the_manifest_as_the_switcher_does() -> None:
    from activate.manifest_format import MANIFEST_NAME
    from builder.bundle import listing

    assert listing.MANIFEST_NAME == MANIFEST_NAME
