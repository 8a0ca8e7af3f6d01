"""Positions in a store's log as the opaque strings the application sees (ADR 0009).

SQLite and memory stores number their events in commit order already (one writer at a time), so
a position there is the notification id, written as 20 digits so that positions compare as
strings in log order; ``""`` is the start. PostgreSQL's positions are ``LogPosition`` encodings
(``threadbox.infrastructure.pg_recorder``): the two forms never decode as each other.
"""

from __future__ import annotations

import re

from threadbox.domain.errors import InvalidInput

_DIGITS = re.compile(r"[0-9]{20}")
START = ""
"""Before every event of any store."""


def encode_id(notification_id: int) -> str:
    """The position just after the event ``notification_id`` (0: the start, ``""``)."""
    if notification_id < 0:
        raise ValueError(f"a notification id is never negative, got {notification_id}")
    return "" if notification_id == 0 else f"{notification_id:020d}"


def decode_id(position: str) -> int:
    """The notification id ``encode_id`` wrote; ``InvalidInput`` naming the position if
    ``position`` is not one of a store numbered by notification id."""
    if position == START:
        return 0
    if _DIGITS.fullmatch(position) is None or int(position) == 0:
        raise InvalidInput(
            f"{position[:60]!r} is not a position of this store: expected '' (the start) or "
            "20 digits",
            "position",
        )
    return int(position)
