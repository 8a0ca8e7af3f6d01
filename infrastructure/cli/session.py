"""What every command shares: the store URL, the consoles, JSON output and error reporting."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import threadbox
import typer
from pydantic import BaseModel
from rich.console import Console
from threadbox import Mailbox
from threadbox.errors import InvalidInput, PayloadTooLarge, ThreadboxError

USAGE_EXIT = 2  # usage errors and invalid input
FAILURE_EXIT = 1  # everything else threadbox refuses


@dataclass
class Session:
    """The options of one invocation, read from the command line and the env mapping."""

    url: str | None
    env: Mapping[str, str]
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    @contextmanager
    def mailbox(self) -> Iterator[Mailbox]:
        with reported(self), threadbox.open(self.url, env=self.env) as mailbox:
            yield mailbox

    def print_json(self, value: Any) -> None:
        sys.stdout.write(orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()


def session_of(ctx: typer.Context) -> Session:
    session = ctx.find_root().obj
    assert isinstance(session, Session), "the root callback stores the session"
    return session


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


@contextmanager
def reported(session: Session) -> Iterator[None]:
    """A threadbox error becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except ThreadboxError as error:
        session.err.print(f"error [{error.code}]: {error.message}", markup=False, highlight=False)
        usage = isinstance(error, InvalidInput | PayloadTooLarge)
        raise typer.Exit(USAGE_EXIT if usage else FAILURE_EXIT) from None
    except OSError as error:
        session.err.print(f"error [io]: {error}", markup=False, highlight=False)
        raise typer.Exit(FAILURE_EXIT) from None
