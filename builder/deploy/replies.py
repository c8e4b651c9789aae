"""The switcher's replies, structured into activate/protocol.py's types once, at the edge.

Unknown keys are kept (in `wire`), never refused: a switcher of another version may send
more. A missing key that every switcher sends, or a value of the wrong type, is a reply that
does not fit: `Misfit`, with the key path, which the caller turns into its one line.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, StrEnum
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

from activate.protocol import Reply
from builder.base import strict

T = TypeVar("T")


class Misfit(ValueError):
    """A reply that does not fit its type: where, and what is wrong there."""


def _member(value: Any, kind: type[Enum]) -> Enum:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(m.value) for m in kind)
        raise ValueError(
            f"must be one of {known}, not {strict.describe(value, strict.JSON)}"
        ) from None


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
                raise TypeError(f"must be an object, not {strict.describe(value, strict.JSON)}")
            found = inner(value, kind)
            # the JSON as it came: keys of other versions travel on to --json
            return dataclasses.replace(found, wire=value) if isinstance(found, Reply) else found

        return hook

    return factory


def _make_converter() -> cattrs.Converter:
    # unknown keys are kept, not refused: a switcher of another version may send more
    conv = strict.converter(strict.JSON, forbid_extra_keys=False, int_is_float=True)
    # a StrEnum is a str too: its own hook comes first in its MRO
    conv.register_structure_hook(StrEnum, _member)
    conv.register_structure_hook_factory(dataclasses.is_dataclass, _dataclass_hook(conv))
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
        raise Misfit(f"must be a list, not {strict.describe(raw, strict.JSON)}")
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
