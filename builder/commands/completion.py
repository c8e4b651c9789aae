"""Shell completion for bash and zsh: commands, options, host names, tags, generation numbers.

The scripts ask `bundle __complete WHAT [HOST]` (builder/commands/complete.py) for the dynamic
parts, so they always match the project they are run in; printing a script loads no project.
"""

from __future__ import annotations

import argparse
import sys

BASH = r"""# bundle completion for bash: eval "$(bundle completion bash)"
_bundle_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]} cmd="" host="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -*) ;;
            *) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; elif [ -z "$host" ]; then host=${COMP_WORDS[i]}; fi ;;
        esac
    done
    local IFS=$'\n'
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$("$prog" __complete commands 2>/dev/null)" -- "$cur"))
    elif [ "$prev" = --generation ] || [ "$prev" = --to ]; then
        COMPREPLY=($(compgen -W "$("$prog" __complete generations "$host" 2>/dev/null)" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$("$prog" __complete options "$cmd" 2>/dev/null)" -- "$cur"))
    elif [ -z "$host" ]; then
        COMPREPLY=($(compgen -W "$("$prog" __complete hosts 2>/dev/null)" -- "$cur"))
    elif [ "$cmd" = diff ]; then
        COMPREPLY=($(compgen -W "$("$prog" __complete generations "$host" 2>/dev/null)" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$("$prog" __complete hosts 2>/dev/null)" -- "$cur"))
    fi
}
complete -F _bundle_complete bundle bundlectl
"""

ZSH = (
    '# bundle completion for zsh: eval "$(bundle completion zsh)"\n'
    "autoload -U +X compinit && compinit -u\n"
    "autoload -U +X bashcompinit && bashcompinit\n" + BASH.split("\n", 1)[1]
)


def script(shell: str) -> str:
    return BASH if shell == "bash" else ZSH


def subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0
