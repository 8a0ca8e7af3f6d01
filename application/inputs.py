"""Input checks at the application's edge: every argument becomes a valid value or an
``InvalidInput`` / ``PayloadTooLarge`` naming the field, before anything is decided."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
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


_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(key: str) -> str:
    """A key as a field name can show it: a lone surrogate as its ``\\udXXX`` escape."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def unstorable(value: Any, where: str) -> tuple[str, str] | None:
    """Where and why JSON ``value`` would not be stored as sent, or None: a lone surrogate in a
    string or an object key (UTF-8 cannot encode it), a float that is not a JSON number (orjson
    writes NaN and infinities as null), nesting too deep. ``where`` names ``value``; the answer
    names the field at fault under it (a bad key: the object holding it). Iterative, so hostile
    input cannot exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        item, level, at = stack.pop()
        if isinstance(item, str):
            if (bad := _SURROGATE.search(item)) is not None:
                return at, f"holds a lone surrogate (at index {bad.start()})"
        elif isinstance(item, float) and not math.isfinite(item):
            return at, f"{item} is not a JSON number"
        elif isinstance(item, dict):
            if level > MAX_MESSAGE_DEPTH:
                return at, f"nests deeper than {MAX_MESSAGE_DEPTH} levels"
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key) is not None:
                    return at, f"the key {_shown(key)!r} holds a lone surrogate"
                stack.append((child, level + 1, f"{at}.{_shown(str(key))}"))
        elif isinstance(item, list):
            if level > MAX_MESSAGE_DEPTH:
                return at, f"nests deeper than {MAX_MESSAGE_DEPTH} levels"
            stack.extend((child, level + 1, f"{at}.{n}") for n, child in enumerate(item))
    return None


def identifier(value: Any, what: str) -> str:
    """A valid id (thread ids and cursors may be blank, not empty)."""
    try:
        return check_id(value, what, blank_ok=what in ("thread_id", "after"))
    except (TypeError, ValueError) as e:
        raise errors.InvalidInput(f"invalid {what}: {e}", what) from None


def free_text(value: Any, what: str) -> str:
    """A caller's free text (a reason, a detail): a string that stores exactly as sent, so with
    no lone surrogate (UTF-8 cannot encode one)."""
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{what} must be a string", what)
    if (bad := _SURROGATE.search(value)) is not None:
        raise errors.InvalidInput(
            f"invalid {what}: holds a lone surrogate (at index {bad.start()})", what
        )
    return value


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


def limit(value: object) -> int | None:
    """A page size: None (no limit), or a whole number >= 1."""
    if value is None:
        return None
    if not is_int(value) or cast(int, value) < 1:
        raise errors.InvalidInput(f"limit must be a whole number >= 1, not {value!r}", "limit")
    return cast(int, value)


def timeout(value: object) -> float:
    """A timeout in seconds: a number >= 0, or None (never) as ``inf``."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise errors.InvalidInput(
            f"timeout must be a number of seconds >= 0 or None, got {value!r}", "timeout"
        )
    return float(value)


def message(value: Any, what: str, max_bytes: int) -> Message:
    """A valid message that stores exactly as sent, within ``max_bytes`` encoded."""
    message = coerce(Message, value, what)
    # Plain text with no metadata holds no keys, numbers or nesting of the caller's: only a
    # lone surrogate in its text can fail the encoding below, and is looked for then.
    plain = not message.metadata and all(isinstance(p, TextPart) for p in message.content)
    if not plain:
        _refuse_unstorable(message, what)
    try:
        dumped = message.model_dump(mode="json")
        size = len(orjson.dumps(dumped))
    except (orjson.JSONEncodeError, PydanticSerializationError) as e:
        _refuse_unstorable(message, what)  # names the field, for a lone surrogate
        # integers beyond 64 bits
        raise errors.InvalidInput(f"invalid {what}: not storable as JSON: {e}", what) from None
    if size > max_bytes:
        raise errors.PayloadTooLarge(
            f"{what} is {size} bytes encoded; the limit is {max_bytes}",
            size,
            max_bytes,
        )
    return message


def _refuse_unstorable(message: Message, what: str) -> None:
    """``InvalidInput`` naming the field of ``message`` that would not be stored as sent.

    The walk reads the message as Python values, keys unencoded: pydantic's JSON dump would
    turn a lone surrogate in a top-level metadata key into U+FFFD replacement characters (a
    different key than sent) and fail with a serialization error on a nested one."""
    found = unstorable(message.model_dump(), what)
    if found is not None:
        where, reason = found
        raise errors.InvalidInput(f"invalid {where}: {reason}", where)


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
