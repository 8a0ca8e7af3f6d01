"""The HTTP API (docs/http-api.md): ``create_app(mailbox, token=...)`` builds it; nothing is
wired at import time."""

from .app import create_app
from .limits import body_limit_for
from .stream import StreamSettings

__all__ = ["StreamSettings", "body_limit_for", "create_app"]
