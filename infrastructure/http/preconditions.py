"""``If-Match`` and ``ETag``: the entry revision or thread version a write is guarded by."""

from __future__ import annotations

import re

from .problems import Problem

_STRONG_TAG = re.compile(r'^"(\d{1,18})"$')


def etag(number: int) -> str:
    return f'"{number}"'


def required_match(header: str | None, what: str) -> int:
    """The number in ``If-Match: "<n>"``; 428 when absent, 400 when it is not one strong tag."""
    if header is None:
        raise Problem(
            428,
            "precondition_required",
            f'If-Match: "<{what}>" is required: read the current {what} first',
            field="if-match",
        )
    found = _STRONG_TAG.match(header.strip())
    if found is None:
        raise Problem(
            400,
            "invalid_input",
            f'If-Match must be one strong tag "<{what}>" (a whole number), not {header!r}',
            field="if-match",
        )
    return int(found.group(1))
