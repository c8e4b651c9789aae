"""Read a compose file's YAML the way docker compose (go-yaml v3, YAML 1.2) reads it.

PyYAML follows YAML 1.1, where `22:22` is the number 1342 (base 60), `no`, `yes`, `on` and `off`
are booleans and `2024-01-02` is a date. Compose reads all of them as strings, so a port
`- 22:22` stays a port and `restart: no` stays the policy `no`. Integers keep go-yaml's reading
(`0755` is octal, `1_000` is 1000), and `<<` merges and anchors work as in compose.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from builder.base.errors import InputError

_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
             "tag:yaml.org,2002:timestamp"}  # fmt: skip
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans and numbers: no base 60, no yes/no, no dates."""


ComposeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ComposeLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
ComposeLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
ComposeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=ComposeLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InputError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
