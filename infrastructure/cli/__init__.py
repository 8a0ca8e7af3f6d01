"""The ``threadbox`` command line (docs/cli.md): ``main()`` runs it, ``build_cli(env)`` builds it.

The command line and the HTTP server come with the ``server`` extra
(``pip install 'threadbox[server]'``); the library itself needs neither. Without the extra,
``threadbox`` says so in one line instead of failing with an import traceback.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import build_cli

# The modules of the `server` extra (pyproject.toml); a missing one means the extra is missing.
SERVER_MODULES = frozenset(
    {
        "typer",
        "click",
        "rich",
        "fastapi",
        "starlette",
        "uvicorn",
        "sse_starlette",
        "ag_ui",
        "jsonpatch",
    }
)


def main() -> None:
    """Run the command line on ``sys.argv`` and the process environment, then exit."""
    try:
        from .app import run
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] not in SERVER_MODULES:
            raise
        sys.stderr.write(
            f"error [missing_extra]: the threadbox command line needs {missing.name!r}: "
            "pip install 'threadbox[server]'\n"
        )
        raise SystemExit(1) from None
    raise SystemExit(run(sys.argv[1:], os.environ))


def __getattr__(name: str) -> Any:
    """``build_cli`` loads the command line's libraries on first use."""
    if name == "build_cli":
        from .app import build_cli

        return build_cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_cli", "main"]
