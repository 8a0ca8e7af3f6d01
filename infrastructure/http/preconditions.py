"""Conditional requests (RFC 9110 §13): ``ETag``, ``If-Match`` on writes, ``If-None-Match`` on
reads. A resource's ETag is what its ``If-Match`` expects: a pending entry's revision, the
pending list's and the thread's version, each a strong tag ``"<n>"``.

What is decided here is HTTP's own: the header syntax, ``*``, lists, weak tags never matching
``If-Match`` (strong comparison) and matching ``If-None-Match`` (weak comparison). Whether a
revision or version is current stays the domain's decision: a write is sent with the one
expected number the header stands for, and the domain answers ``revision_conflict`` or
``version_conflict`` (412) when it is stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Response

from .problems import Problem

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3)
_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')
_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")  # as etag() writes them: tags compare as strings


def etag(number: int) -> str:
    """The strong ETag of a revision or version."""
    return f'"{number}"'


@dataclass(frozen=True)
class Condition:
    """A parsed ``If-Match`` or ``If-None-Match``: ``*``, or the listed tags."""

    any: bool
    strong: frozenset[str]  # the opaque values of the strong tags
    weak: frozenset[str]  # the opaque values of the weak tags (W/"…")

    def numbers(self) -> frozenset[int]:
        """The strong tags that can name one of our revisions or versions."""
        return frozenset(int(t) for t in self.strong if _NUMBER.fullmatch(t))


def parse(header: str, name: str) -> Condition:
    """``*`` or a comma-separated list of entity tags; anything else is a 400 naming the header."""
    if header.strip() == "*":
        return Condition(True, frozenset(), frozenset())
    strong: set[str] = set()
    weak: set[str] = set()
    rest = header
    while True:
        found = _TAG.match(rest)
        if found is None:
            raise Problem(
                400,
                "invalid_input",
                f'{name} must be * or a list of entity tags such as "3" or W/"3", not {header!r}',
                field=name.lower(),
            )
        (weak if found.group(1) else strong).add(found.group(2))
        rest = rest[found.end() :]
        if not rest:
            return Condition(False, frozenset(strong), frozenset(weak))
        if not rest.startswith(","):
            raise Problem(
                400,
                "invalid_input",
                f"{name}: entity tags are separated by commas, in {header!r}",
                field=name.lower(),
            )
        rest = rest[1:]


def expected_number(header: str | None, what: str, current: Callable[[], int]) -> int | None:
    """The revision or version a write guarded by ``If-Match`` expects: None for ``*`` (any
    current representation), the tag for one strong tag; for a list, the current number when it
    is listed (the write is still guarded by it, so a change in between is a conflict), else
    one that is listed, which the domain then refuses as stale. 428 without the header; 412
    when only weak tags are given, since ``If-Match`` compares strongly."""
    if header is None:
        raise Problem(
            428,
            "precondition_required",
            f'If-Match: "<{what}>" is required: read the current {what} first (its ETag)',
            field="if-match",
        )
    condition = parse(header, "If-Match")
    if condition.any:
        return None
    numbers = condition.numbers()
    if not numbers:
        raise Problem(
            412,
            "precondition_failed",
            f"If-Match {header!r} names no current {what}: weak tags never match If-Match, and "
            f'a {what} tag is a whole number, "<{what}>"',
            field="if-match",
        )
    if len(numbers) == 1:
        return next(iter(numbers))
    now = current()
    return now if now in numbers else min(numbers)


def not_modified(header: str | None, number: int, response: Response) -> Response | None:
    """For a GET with ``If-None-Match``: a 304 (with the ETag) when the header is ``*`` or lists
    the current tag, compared weakly; else None and the GET answers as usual."""
    response.headers["ETag"] = etag(number)
    if header is None:
        return None
    condition = parse(header, "If-None-Match")
    current = str(number)
    if condition.any or current in condition.strong or current in condition.weak:
        return Response(status_code=304, headers={"ETag": etag(number)})
    return None
