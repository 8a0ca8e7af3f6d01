"""Input checks at the application's edge: every argument becomes a valid value or an
``InvalidInput`` / ``PayloadTooLarge`` naming the field, before anything is decided."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import orjson
from pydantic import ValidationError
from threadbox.domain import errors
from threadbox.domain.values import DeliveryBoundary, DeliveryMode, Message, TextPart, check_id

T = TypeVar("T")


def invalid(error: ValidationError, what: str) -> errors.InvalidInput:
    """The first validation error, as ``InvalidInput`` naming the field."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in (what, *first["loc"]) if p != "")
    return errors.InvalidInput(f"invalid {where}: {first['msg']}", where)


def coerce(model: type[T], value: Any, what: str) -> T:
    """``value`` as a ``model`` (a model given as a dict is validated)."""
    if isinstance(value, model):
        return value
    try:
        return cast(T, model.model_validate(value))  # type: ignore[attr-defined]
    except ValidationError as e:
        raise invalid(e, what) from None


# Stored events and snapshots wrap a message in JSON levels of their own, and orjson refuses
# more than 255 levels in all: a message itself may nest at most this deep.
MAX_MESSAGE_DEPTH = 128


def unstorable(value: Any) -> str | None:
    """Why JSON ``value`` would not be stored as sent (orjson writes NaN and infinities as null),
    or None; iterative, so hostile input cannot exhaust the stack."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item} is not a JSON number"
        if isinstance(item, (dict, list)):
            if level > MAX_MESSAGE_DEPTH:
                return f"nests deeper than {MAX_MESSAGE_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return None


def identifier(value: Any, what: str) -> str:
    """A valid id (thread ids and cursors may be blank, not empty)."""
    try:
        return check_id(value, what, blank_ok=what in ("thread_id", "after"))
    except (TypeError, ValueError) as e:
        raise errors.InvalidInput(f"invalid {what}: {e}", what) from None


def is_int(value: object) -> bool:
    """A whole number the stores can hold (their integer columns are 64-bit)."""
    return isinstance(value, int) and not isinstance(value, bool) and value < 2**63


def guard(value: object, what: str) -> int | None:
    """An expected revision or version: None, or a whole number >= 0."""
    if value is None:
        return None
    if not is_int(value) or cast(int, value) < 0:
        raise errors.InvalidInput(f"{what} must be a whole number >= 0, not {value!r}", what)
    return cast(int, value)


def message(value: Any, what: str, max_bytes: int) -> Message:
    """A valid message that stores exactly as sent, within ``max_bytes`` encoded."""
    message = coerce(Message, value, what)
    dumped = message.model_dump(mode="json")
    # Plain text with no metadata holds no numbers and no nesting: only the walk's cost to skip.
    plain = not message.metadata and all(isinstance(p, TextPart) for p in message.content)
    if not plain and (reason := unstorable(dumped)) is not None:
        raise errors.InvalidInput(f"invalid {what}: {reason}", what)
    try:
        size = len(orjson.dumps(dumped))
    except orjson.JSONEncodeError as e:  # lone surrogates, integers beyond 64 bits, depth
        raise errors.InvalidInput(f"invalid {what}: not storable as JSON: {e}", what) from None
    if size > max_bytes:
        raise errors.PayloadTooLarge(
            f"{what} is {size} bytes encoded; the limit is {max_bytes}",
            size,
            max_bytes,
        )
    return message


def messages(values: Any, max_bytes: int, new_id: Callable[[], str]) -> tuple[Message, ...]:
    """Valid messages, each with an id (``new_id()`` for those sent without one)."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise errors.InvalidInput("messages must be a list of messages", "messages")
    checked = [message(v, f"messages.{n}", max_bytes) for n, v in enumerate(values)]
    return tuple(m if m.id is not None else m.with_id(new_id()) for m in checked)


def mode(value: Any) -> DeliveryMode:
    """A delivery mode (the default one for None)."""
    return DeliveryMode() if value is None else coerce(DeliveryMode, value, "mode")


def boundary(value: Any) -> DeliveryBoundary:
    """A boundary, by value or name."""
    try:
        return DeliveryBoundary(value)
    except ValueError:
        raise errors.InvalidInput(
            f"boundary must be one of {[b.value for b in DeliveryBoundary]}, not {value!r}",
            "boundary",
        ) from None
