"""The command reference, generated from the CLI itself so it never drifts.

.venv/bin/python -m builder.reference > docs/commands.md
"""

from __future__ import annotations

import argparse

from builder.cli.parser import make_parser
from builder.commands.completion import subparsers


def _usage(parser: argparse.ArgumentParser) -> str:
    text = " ".join(parser.format_usage().split())[len("usage: ") :]
    return text.replace(" [-h] [--stacks DIR] [--bundles DIR] [--debug] [-q] [-v]", "")


def _metavar(action: argparse.Action) -> str | None:
    """An action's metavar as usage shows it: a tuple (one name per value) joined by spaces."""
    if isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    return action.metavar


def render() -> str:
    parser = make_parser()
    sub = subparsers(parser)
    assert sub is not None
    out = [
        "# Command reference",
        "",
        "Generated from the CLI by `python -m builder.reference`; do not edit by hand.",
        "`bundlectl` is the same command under a second name.",
        "",
        "Options every command takes: `--stacks DIR`, `--bundles DIR`, `--debug` (tracebacks),",
        "`-q/--quiet`, `-v/--verbose`. Exit codes: 0 done, 1 an operation failed, 2 bad input.",
        "`--quiet` leaves only what was asked for: the data of `status`, `generations`, `diff`,",
        "`show`, `log`, `plan`, `outdated`, `secrets list`, `restore --list` and any `--json`;",
        "a command that succeeds prints nothing else, and errors still print.",
        "`bundle --version` prints the installed version. A misspelt command is answered in",
        "one line with the nearest one (`bundle swich`: did you mean `bundle switch`?), exit 2.",
        "",
    ]
    helps = {a.dest: a.help for a in sub._choices_actions}
    common = {"--stacks", "--bundles", "--debug", "--quiet", "--verbose", "--help"}
    for name, p in sub.choices.items():
        if name.startswith("_"):
            continue
        out += [f"## bundle {name}", "", helps.get(name) or "", "", "```", _usage(p), "```", ""]
        rows = []
        for action in p._actions:
            if set(action.option_strings) & common or action.help == argparse.SUPPRESS:
                continue
            names = ", ".join(action.option_strings) or _metavar(action) or action.dest
            if action.option_strings and action.nargs != 0:
                names += f" {_metavar(action) or action.dest.upper()}"
            rows.append(f"| `{names}` | {(action.help or '').replace('|', '/')} |")
        if rows:
            out += ["| argument | meaning |", "|---|---|", *rows, ""]
        if p.epilog:
            out += [p.epilog.replace("example:\n  ", "Example: `").rstrip() + "`", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
