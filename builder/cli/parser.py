"""The `bundle` command line: every command, its arguments and its help text.

Building the parser imports nothing beyond argparse: `bundle --help` and `--version` end here.
Each command names the function that runs it as `MODULE:FUNCTION` of builder.commands, imported
only when it runs (builder/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, cast

EXAMPLES = """examples:
  bundle build vps1                 build stacks/vps1.toml into the next generation
  bundle switch vps1                build, push and activate in one go
  bundle rollback vps1              back to the previously active generation
  bundle status vps1                what the server runs
  bundle diff vps1                  what changed between the last two generations
  bundle diff vps1 1 2 --stat       any two generations, one line per file
  bundle generations vps1           list the built generations
  bundle check vps1                 validate only (exit 0 or 2)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a misspelt command is one line with the nearest listed command."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if not isinstance(action, argparse._SubParsersAction) or value in (choices or {}):
            return super()._check_value(action, value)
        # start-up: difflib only for a misspelt command
        import difflib

        listed = [name for name in choices or {} if not name.startswith("_")]  # not __complete
        near = difflib.get_close_matches(value, listed, n=1, cutoff=0.6)
        hint = (
            f"did you mean `{self.prog} {near[0]}`?" if near else f"`{self.prog} --help` lists them"
        )
        print(f"error: unknown command {value!r}; {hint}", file=sys.stderr)
        raise SystemExit(2)


class VersionAction(argparse._VersionAction):
    """`--version`, printed as argparse prints it, the version looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        # start-up: importlib.metadata and tomllib (~30 ms) only for --version
        from builder.base.version import version

        self.version = f"bundle {version()}"
        super().__call__(parser, *args)


def add_goal(p: argparse.ArgumentParser) -> None:
    goal = p.add_mutually_exclusive_group()
    goal.add_argument(
        "--test",
        action="store_true",
        help="activate now, but a reboot brings back the generation that ran before",
    )
    goal.add_argument(
        "--boot",
        action="store_true",
        help="change nothing running now: the next boot activates the new generation",
    )


def add_safety(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-rollback",
        action="store_true",
        help="failed health checks leave the new generation active (for debugging); no dead-man",
    )
    p.add_argument(
        "--health-timeout",
        type=int,
        metavar="S",
        help="seconds the health checks may take (default: [host] health_timeout, 60)",
    )
    p.add_argument(
        "--confirm-timeout",
        type=int,
        metavar="S",
        help="seconds the server waits for this deploy to confirm over a new connection before "
        "rolling back by itself (default: [host] confirm_timeout, 30; 0: no dead-man)",
    )


def add_hosts(p: argparse.ArgumentParser) -> None:
    p.add_argument("hosts", nargs="*", metavar="HOST", help="host names or @tag")
    p.add_argument("--all", action="store_true", help="every host in stacks/")
    p.add_argument(
        "--parallel", type=int, default=10, metavar="N", help="hosts at a time (default 10)"
    )
    p.add_argument("--fail-fast", action="store_true", help="start no more hosts after one fails")


def add_rolling(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch",
        metavar="N|P%",
        help="switch N hosts (or P%% of them) at a time, each batch healthy before the next",
    )
    p.add_argument("--canary", metavar="HOST", help="switch HOST first, then ask before the rest")
    p.add_argument(
        "--canary-wait",
        metavar="TIME",
        help="instead of asking: go on once the canary ran healthy this long (90s, 5m)",
    )


def add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        metavar="URL|DIR",
        help="ssh://user@host:port or a folder standing in for the server's root, instead of the host's address",
    )
    p.add_argument(
        "--accept-new", action="store_true", help="trust and remember an unknown SSH host key"
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")


def add_common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # options may come before or after the command; a subcommand must not reset them
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--stacks", metavar="DIR", help="stacks folder (default: ./stacks)", **d)
    p.add_argument("--bundles", metavar="DIR", help="build output (default: ./bundles)", **d)
    p.add_argument("--debug", action="store_true", help="show tracebacks", **d)
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors", **d)
    p.add_argument("-v", "--verbose", action="store_true", help="say more", **d)


# top-level options that take a value: the word after them is not the command
VALUE_OPTIONS = ("--stacks", "--bundles")
# commands that read the whole parser (the completion lists every command and flag)
NEEDS_ALL = frozenset({"completion", "__complete"})


def command_named(argv: Sequence[str]) -> str | None:
    """The command word of `argv`, or None when the top-level parser itself must answer."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--version"):
            return None
        if word.startswith("--") and "=" not in word and len(word) > 2:
            if any(option.startswith(word) for option in VALUE_OPTIONS):
                next(words, None)  # argparse accepts `--stack DIR` for --stacks
            continue
        if word.startswith("-"):
            continue
        return None if word in NEEDS_ALL else word
    return None


class _Unbuilt:
    """What stands in for a command that is not the one being run: everything it is told is
    ignored, so the ~300 arguments of the other commands cost nothing at start-up."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def __setattr__(self, name: str, value: Any) -> None:
        pass

    def _ignore(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        return self


class _OnlyCommand:
    """The subparsers of `bundle`, building only the command named `only` (all when None)."""

    def __init__(self, action: Any, only: str | None) -> None:
        self.action = action
        self.only = only
        self.built = False

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if self.only is not None and self.only not in (name, *kwargs.get("aliases", ())):
            # typed as a parser so the calls on it stay checked; it accepts all of them
            return cast(argparse.ArgumentParser, _Unbuilt())
        self.built = True
        return cast(argparse.ArgumentParser, self.action.add_parser(name, **kwargs))


def make_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` just that command's arguments (the others are
    left out; an unknown word builds them all, so the error can name the nearest command)."""
    parser, sub = _make_parser(only)
    if only is not None and not sub.built:
        parser, sub = _make_parser(None)
    return parser


def _make_parser(only: str | None) -> tuple[argparse.ArgumentParser, _OnlyCommand]:
    parser = Parser(
        prog="bundle",
        description="Build per-host TOML stacks into content-hashed bundles of podman quadlet units.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, top=True)
    parser.add_argument("--version", action=VersionAction)
    sub = _OnlyCommand(parser.add_subparsers(dest="command", metavar="COMMAND"), only)

    def command(name: str, func: str, help: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common(p)
        p.set_defaults(func=func)
        return p

    p = command(
        "init",
        "init:cmd_init",
        "start a project: an example host, a shared service and a staging variant",
        "bundle init myinfra",
    )
    p.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: here")

    p = command(
        "demo",
        "demo:cmd_demo",
        "try bundle without a VPS: a throwaway local server, narrated (needs root)",
        "sudo bundle demo",
    )
    p.add_argument("--keep", action="store_true", help="leave the server running at the end")
    p.add_argument("--stop", action="store_true", help="stop the server --keep left running")

    p = command(
        "preview",
        "preview:cmd_preview",
        "boot a generation on a throwaway local server, check it, tear it down (needs root)",
        "sudo bundle preview vps1 --keep",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--generation", type=int, metavar="N", help="default: the latest built")
    p.add_argument("--keep", action="store_true", help="leave the preview server running")
    p.add_argument("--stop", action="store_true", help="stop the preview --keep left running")

    p = command(
        "build", "build:cmd_build", "build hosts' stacks into new generations", "bundle build vps1"
    )
    p.add_argument("hosts", nargs="+", metavar="HOST")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "check",
        "build:cmd_check",
        "validate hosts' stacks without building (exit 0 or 2)",
        "bundle check vps1",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST")

    p = command(
        "diff",
        "generations:cmd_diff",
        "show what changed between two generations",
        "bundle diff vps1 6 7 --stat",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "old", nargs="?", type=int, metavar="FROM", help="default: the one before the latest"
    )
    p.add_argument("new", nargs="?", type=int, metavar="TO", help="default: the latest")
    p.add_argument("--stat", action="store_true", help="one line per changed file")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "generations",
        "generations:cmd_generations",
        "list a host's generations (built, or --remote)",
        "bundle generations vps1 --remote",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--remote", action="store_true", help="what the server has, active marked")
    add_target(p)

    p = command(
        "push",
        "deploy:cmd_push",
        "copy a generation to the server; nothing is activated",
        "bundle push vps1 --generation 7",
    )
    add_hosts(p)
    p.add_argument("--generation", type=int, metavar="N", help="default: the latest built")
    add_target(p)

    p = command(
        "activate",
        "deploy:cmd_activate",
        "switch the server to a pushed generation",
        "bundle activate vps1 --generation 7",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--generation", type=int, metavar="N", required=True)
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    add_goal(p)
    add_safety(p)
    add_target(p)

    p = command(
        "switch", "deploy:cmd_switch", "build, push and activate in one go", "bundle switch vps1"
    )
    add_hosts(p)
    add_rolling(p)
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    add_goal(p)
    add_safety(p)
    add_target(p)

    p = command(
        "rollback",
        "deploy:cmd_rollback",
        "go back to the previously active generation",
        "bundle rollback vps1 --to 5",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--to", type=int, metavar="N", help="any generation on the server")
    p.add_argument(
        "--force", action="store_true", help="overwrite unit files changed by hand on the server"
    )
    p.add_argument(
        "--restore-data",
        action="store_true",
        help="also put back the data kept before the generations rolled back past changed an "
        "image (the data it replaces is kept too); with --to CURRENT: only the data",
    )
    add_safety(p)
    add_target(p)

    p = command(
        "status",
        "deploy:cmd_status",
        "what the server runs: active generation, units, last deploy",
        "bundle status vps1 --json",
    )
    add_hosts(p)
    add_target(p)

    p = command(
        "gc",
        "deploy:cmd_gc",
        "remove old generations here and on the server",
        "bundle gc vps1 --keep 5",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "--keep", type=int, default=5, metavar="N", help="newest generations to keep (default 5)"
    )
    add_target(p)

    p = command(
        "plan",
        "deploy:cmd_plan",
        "what activation would do on the server (stop, start, restart, leave), without doing it",
        "bundle plan vps1",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--generation", type=int, metavar="N", help="default: build the stack now")
    add_target(p)

    p = command(
        "log", "deploy:cmd_log", "the server's deploy history", "bundle log vps1 --limit 20"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="last N entries (0: all)")
    add_target(p)

    p = command(
        "show",
        "generations:cmd_show",
        "the units and files of a generation",
        "bundle show vps1 nextcloud",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument(
        "unit",
        nargs="?",
        metavar="UNIT",
        help="a unit (nextcloud, nextcloud.container, nextcloud.service)",
    )
    p.add_argument("--generation", type=int, metavar="N", help="default: the latest built")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "import",
        "import_compose:cmd_import",
        "turn a docker-compose file into a stack, reporting what it could not translate",
        "bundle import compose.yml --host web2",
    )
    p.add_argument("compose", metavar="COMPOSE_FILE")
    p.add_argument("--host", required=True, metavar="NAME", help="the new host (stacks/NAME.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing stack file")

    p = command(
        "export",
        "export:cmd_export",
        "write a host's stack as Kubernetes manifests (k3s), listing what did not translate",
        "bundle export vps1 --kube",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--kube", action="store_true", required=True, help="Kubernetes manifests")
    p.add_argument("--out", metavar="DIR", help="output folder (default: export/HOST)")
    p.add_argument(
        "--ingress-class",
        default="traefik",
        metavar="CLASS",
        help="ingressClassName of the routes' Ingresses (default: traefik, k3s' own)",
    )

    p = command(
        "outdated",
        "outdated:cmd_outdated",
        "newer image versions in the registries: pinned, newest in the same major, newest",
        "bundle outdated vps1 --json",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST", help="host names")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "lock",
        "lock:cmd_lock",
        "resolve each image's tag to its registry digest into stacks/lock/HOST.json",
        "bundle lock vps1",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST", help="host names")

    p = command(
        "update",
        "lock:cmd_update",
        "raise image versions in the stack files and refresh the lock (exit 3: nothing to update)",
        "bundle update vps1 --only nextcloud",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST", help="host names")
    p.add_argument("--major", action="store_true", help="also raise to a newer major version")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SERVICE",
        help="only this service (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")

    p = command(
        "completion",
        "completion:cmd_completion",
        "print a shell completion script",
        'eval "$(bundle completion bash)"',
    )
    p.add_argument("shell", choices=("bash", "zsh"))

    p = sub.add_parser("__complete")  # used by the completion scripts, not listed
    add_common(p)
    p.set_defaults(func="complete:cmd_complete")
    p.add_argument("what", choices=("commands", "options", "hosts", "generations"))
    p.add_argument("arg", nargs="?")
    p = command(
        "backup",
        "backup:cmd_backup",
        "back up the host's volumes now, as its backup.timer would (exit 1 if it failed)",
        "bundle backup vps1 --now",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--now", action="store_true", help="run the backup now and wait for it")
    add_target(p)
    p = command(
        "restore",
        "backup:cmd_restore",
        "stop a service, put its volumes back from a backup, start it (or list the snapshots)",
        "bundle restore vps1 nextcloud --snapshot 20261125T030012Z",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("service", nargs="?", metavar="SERVICE", help="a pod or container with data")
    p.add_argument(
        "--snapshot", metavar="ID", help="a run (from --list) or a snapshot id; default: the latest"
    )
    p.add_argument(
        "--list", action="store_true", help="the snapshots (of SERVICE's volumes), by run"
    )
    p.add_argument("--all", action="store_true", help="every service: a host rebuilt from nothing")
    p.add_argument(
        "--from",
        dest="from_host",
        metavar="HOST",
        help="restore what another host backed up (moving a service); reads that host's repository",
    )
    add_target(p)
    top = sub.add_parser(
        "secrets",
        help="encrypted secrets of a host (or `shared`): edit HOST, set HOST NAME (value on "
        "stdin), list HOST, remove HOST NAME, rekey HOST; see docs/secrets.md",
        description="Encrypted secrets in stacks/secrets/HOST.enc and shared.enc (docs/secrets.md).",
        epilog="example:\n  bundle secrets set vps1 db_password < password.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(top)
    inner = top.add_subparsers(
        dest="secrets_command",
        metavar="ACTION",
        required=True,
        help="edit, set, list, remove, rekey, import-vault, recipients, check, migrate or recovery-key",
    )

    def secrets_command(name: str, func: str, help: str, description: str | None = None) -> Any:
        p = inner.add_parser(name, help=help, description=description or help)
        add_common(p)
        p.set_defaults(func=func)
        return p

    def action(name: str, func: str, help: str) -> Any:
        p = secrets_command(name, func, help)
        p.add_argument("host", metavar="HOST", help="a host, or `shared`")
        return p

    action(
        "edit", "secrets:cmd_edit", "open $EDITOR on the decrypted secrets (a 0600 temporary file)"
    )
    p = action(
        "set", "secrets:cmd_set", "set one secret; the value comes from stdin (or a hidden prompt)"
    )
    p.add_argument("name", metavar="NAME")
    p = action("list", "secrets:cmd_list", "the names of the secrets (never the values)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = action("remove", "secrets:cmd_remove", "remove one secret")
    p.add_argument("name", metavar="NAME")
    action(
        "rekey",
        "secrets:cmd_rekey",
        "encrypt with a new passphrase ($BUNDLE_NEW_PASSPHRASE or a prompt)",
    )
    p = secrets_command(
        "recipients",
        "secrets_age:cmd_recipients",
        "who a host's age files are encrypted to: list, add KEY, remove KEY, apply",
        "list, add or remove a recipient of HOST (an age key or an SSH public key) "
        "and encrypt its files again; apply: encrypt them again to the list as it is",
    )
    p.add_argument("op", choices=["list", "add", "remove", "apply"], metavar="OP")
    p.add_argument("host", metavar="HOST")
    p.add_argument("key", nargs="?", metavar="KEY", help='age1… or "ssh-ed25519 AAAA… comment"')
    p = secrets_command(
        "check",
        "secrets_age:cmd_check",
        "prove every age file is encrypted to exactly its recipients (exit 2 if not)",
    )
    p.add_argument(
        "host", nargs="?", metavar="HOST", help="a host and shared; default: every folder"
    )
    p = secrets_command(
        "migrate",
        "secrets_age:cmd_migrate",
        "move .enc files to one age file per secret, checking each value",
        "move stacks/secrets/LABEL.enc to stacks/secrets/LABEL/NAME.age, checking each value",
    )
    p.add_argument(
        "labels", nargs="*", metavar="LABEL", help="a host or shared; default: every .enc"
    )
    p = secrets_command(
        "recovery-key",
        "secrets_age:cmd_recovery_key",
        "make a passphrase-protected age key that opens every secret",
        "make stacks/secrets/recovery.key.age (a passphrase-protected age key) and "
        "encrypt every age secret to it too",
    )
    what = (
        "import an Ansible Vault file's top-level variables as secrets (names listed, not values)"
    )
    p = secrets_command("import-vault", "import_vault:cmd_import_vault", what)
    p.add_argument("file", metavar="FILE", help="a vaulted YAML file, or YAML with !vault values")
    p.add_argument(
        "--label",
        metavar="HOST|shared",
        help="the secrets file to write (default: from the path, host_vars/HOST or group_vars/all)",
    )
    p.add_argument(
        "--vault-password-file",
        metavar="FILE",
        help="the vault password (default: $ANSIBLE_VAULT_PASSWORD_FILE, else a prompt)",
    )
    return parser, sub
