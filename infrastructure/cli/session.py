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
from threadbox.infrastructure.config import Config

# Exit codes (docs/cli.md): 0 done; 1 refused (a domain or store error); 2 the command line
# itself is wrong (a usage error, or input threadbox rejects as invalid, before writing anything).
USAGE_EXIT = 2
FAILURE_EXIT = 1


@dataclass
class Session:
    """The options of one invocation, read from the command line and the env mapping."""

    env: Mapping[str, str]
    flags: dict[str, Any] = field(default_factory=dict)
    """The root options given (``url``, ``max_pending``, …; None when not given)."""
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    json: bool = False
    """Whether the running command was given ``--json``: its errors are then JSON too."""

    def config(self, **flags: Any) -> Config:
        """The effective configuration: the command's ``flags`` and the root's, over the
        environment (``InvalidInput`` naming the variable or flag that is wrong)."""
        return Config.load(self.env, **(self.flags | flags))

    @contextmanager
    def mailbox(self, *, create: bool = True, config: Config | None = None) -> Iterator[Mailbox]:
        """The mailbox of this invocation's store; reading commands pass ``create=False`` so a
        store that does not exist is reported (``store_not_found``), never created."""
        with reported(self):
            chosen = config or self.config()
            settings = chosen.library_settings()
            with threadbox.open(chosen.url, settings=settings, env={}, create=create) as mailbox:
                yield mailbox

    def print_json(self, value: Any) -> None:
        sys.stdout.write(orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()


def session_of(ctx: typer.Context) -> Session:
    """The invocation's session, told whether this command was given ``--json``."""
    session = ctx.find_root().obj
    if not isinstance(session, Session):
        raise TypeError("the root callback stores the session in ctx.obj")
    session.json = bool(ctx.params.get("as_json"))
    return session


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def report_error(session: Session, code: str, message: str, details: dict[str, Any]) -> None:
    """One error on stderr: a line ``error [code]: message``, or with ``--json`` one JSON object
    ``{"code", "message", ...details}`` (the members of an HTTP problem document)."""
    if session.json:
        problem = {"code": code, "message": message, **details}
        sys.stderr.write(orjson.dumps(jsonable(problem)).decode() + "\n")
        sys.stderr.flush()
    else:
        session.err.print(f"error [{code}]: {message}", markup=False, highlight=False)


@contextmanager
def reported(session: Session) -> Iterator[None]:
    """A threadbox error becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except ThreadboxError as error:
        report_error(session, error.code, error.message, error.details())
        usage = isinstance(error, InvalidInput | PayloadTooLarge)
        raise typer.Exit(USAGE_EXIT if usage else FAILURE_EXIT) from None
    except OSError as error:
        report_error(session, "io", str(error), {})
        raise typer.Exit(FAILURE_EXIT) from None
