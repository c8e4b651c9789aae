"""The switcher's replies, structured into activate/protocol.py's types once, at the edge.

Unknown keys are kept (in `wire`), never refused: a switcher of another version may send
more. A missing key that every switcher sends, or a value of the wrong type, is a reply that
does not fit: `Misfit`, with the key path, which the caller turns into its one line.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, StrEnum
from typing import Any, TypeVar, get_origin

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

from activate.protocol import Reply

T = TypeVar("T")

_WORDS = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


class Misfit(ValueError):
    """A reply that does not fit its type: where, and what is wrong there."""


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"


def _strict(kind: type) -> Any:
    def hook(value: Any, _: Any) -> Any:
        # cattrs would read "5" as 5 or 5 as "5"; a switcher that means a number sends one
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise TypeError(f"must be {_WORDS[kind]}, not {_describe(value)}")

    return hook


def _member(value: Any, kind: type[Enum]) -> Enum:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"must be one of {known}, not {_describe(value)}") from None


def _shaped(conv: cattrs.Converter, base: Any, python_type: type, word: str) -> Any:
    def factory(kind: Any) -> Any:
        inner = base(kind, conv)

        def hook(value: Any, _: Any) -> Any:
            # a string is iterable, but "abc" is not a list of hashes
            if not isinstance(value, python_type):
                raise TypeError(f"must be {word}, not {_describe(value)}")
            return inner(value, kind)

        return hook

    return factory


def _dataclass_hook(conv: cattrs.Converter) -> Any:
    def factory(kind: Any) -> Any:
        renamed: dict[str, Any] = {
            f.name: override(rename=f.name.rstrip("_"))
            for f in dataclasses.fields(kind)
            if f.name.endswith("_")
        }
        if issubclass(kind, Reply):
            renamed["wire"] = override(omit=True)
        inner = make_dict_structure_fn(kind, conv, **renamed)

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"must be an object, not {_describe(value)}")
            found = inner(value, kind)
            # the JSON as it came: keys of other versions travel on to --json
            return dataclasses.replace(found, wire=value) if isinstance(found, Reply) else found

        return hook

    return factory


def _origin(kind: Any) -> object:
    """`tuple` for tuple[int, ...], `dict` for dict[str, int]; typed as a plain object."""
    return get_origin(kind)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    for kind in (str, int, bool, float):
        conv.register_structure_hook(kind, _strict(kind))
    # a StrEnum is a str too: its own hook comes first in its MRO
    conv.register_structure_hook(StrEnum, _member)
    lists = _shaped(conv, homogenous_tuple_structure_factory, list, "a list")
    objects = _shaped(conv, mapping_structure_factory, dict, "an object")
    conv.register_structure_hook_factory(lambda t: _origin(t) is tuple, lists)
    conv.register_structure_hook_factory(lambda t: _origin(t) is dict, objects)
    conv.register_structure_hook_factory(dataclasses.is_dataclass, _dataclass_hook(conv))
    conv.register_structure_hook(Any, lambda v, _: v)
    return conv


CONVERTER = _make_converter()


def structure(raw: Any, kind: type[T]) -> T:
    """`raw` (parsed JSON) as `kind`; Misfit naming the first key that does not fit."""
    try:
        return CONVERTER.structure(raw, kind)
    except (ClassValidationError, IterableValidationError, TypeError, ValueError) as exc:
        path, message = _first(exc, ())
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        raise Misfit(f"`{where}` {message}" if where else message) from None


def structure_list(raw: Any, kind: type[T]) -> list[T]:
    """A JSON list of `kind` (`generations`, `history`)."""
    if not isinstance(raw, list):
        raise Misfit(f"must be a list, not {_describe(raw)}")
    return list(structure(raw, tuple[kind, ...]))  # type: ignore[valid-type]


def _first(exc: BaseException, at: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str]:
    """The key path and message of the first problem cattrs found."""
    for note in getattr(exc, "__notes__", []):
        name, index = getattr(note, "name", None), getattr(note, "index", None)
        if name is not None:
            at = (*at, name.rstrip("_"))
        elif index is not None:
            at = (*at, index)
    if isinstance(exc, ClassValidationError | IterableValidationError) and exc.exceptions:
        return _first(exc.exceptions[0], at)
    if isinstance(exc, KeyError):
        return at, "is missing"
    return at, str(exc)
