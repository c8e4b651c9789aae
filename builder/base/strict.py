"""cattrs converters that take what they are given, never a guess: "5" is not 5, "abc" not a list.

The stack model (TOML) and the switcher's replies (JSON) are read through the same rules; only
the words differ: a TOML file has tables and arrays, JSON has objects and lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory

SCALARS = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


@attrs.frozen
class Words:
    """How a format names its shapes in a message."""

    table: str
    array: str
    quote_limit: int | None = None  # a long string from a peer is cut in the message


TOML = Words("a table", "an array")
JSON = Words("an object", "a list", quote_limit=40)


def describe(value: Any, words: Words) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return words.table
    if isinstance(value, list):
        return words.array
    if isinstance(value, str):
        return f"the string {value[: words.quote_limit]!r}"
    return f"{type(value).__name__} {value!r}"


def _scalar(kind: type, words: Words, int_is_float: bool) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        # cattrs would turn 5 into "5" or "5" into 5; input must say what it means
        if (
            int_is_float
            and kind is float
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise TypeError(f"must be {SCALARS[kind]}, not {describe(value, words)}")

    return hook


def _shaped(conv: cattrs.Converter, base: Any, shape: type, word: str, words: Words) -> Any:
    """A hook factory that first insists on the shape (a string is iterable, but not a list)."""

    def factory(kind: Any) -> Any:
        inner = base(kind, conv)

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, shape):
                raise TypeError(f"must be {word}, not {describe(value, words)}")
            return inner(value, kind)

        return hook

    return factory


def _origin_is(origin: type) -> Callable[[Any], bool]:
    """A predicate for `tuple[str, ...]`-like hints whose origin is `origin`."""

    def matches(hint: Any) -> bool:
        found: object = get_origin(hint)
        return found is origin

    return matches


def converter(words: Words, *, forbid_extra_keys: bool, int_is_float: bool) -> cattrs.Converter:
    """Strict scalars, lists (as tuples) and tables of the right shape; `Any` kept as it is."""
    conv = cattrs.Converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=True)
    for kind in SCALARS:
        conv.register_structure_hook(kind, _scalar(kind, words, int_is_float))
    arrays = _shaped(conv, homogenous_tuple_structure_factory, list, words.array, words)
    tables = _shaped(conv, mapping_structure_factory, dict, words.table, words)
    conv.register_structure_hook_factory(_origin_is(tuple), arrays)
    conv.register_structure_hook_factory(_origin_is(dict), tables)
    conv.register_structure_hook(Any, lambda v, _: v)
    return conv
