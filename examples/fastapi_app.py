"""A FastAPI app that embeds threadbox: the lifespan opens and closes an ``AsyncMailbox``.

    THREADBOX_URL=sqlite:///./chat.db uvicorn examples.fastapi_app:app

Routes: ``POST /threads/{thread_id}/messages`` (a user message, queued for the next run, or
steering the busy run with ``"steer": true``), ``GET /threads/{thread_id}/messages`` (the
visible conversation), ``GET /threads/{thread_id}/events?after_version=N`` (the thread's events
after a version, waiting up to ``wait`` seconds for the first). Every call awaits the mailbox:
no request blocks the event loop, however long the store takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import threadbox.aio
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from threadbox import DeliveryMode, Message, RecordedEvent
from threadbox.aio import AsyncMailbox
from threadbox.errors import InvalidInput, ThreadNotFound


class Said(BaseModel):
    """A user's message."""

    text: str = Field(min_length=1, max_length=10_000)
    steer: bool = False


def create_app(url: str | None = None) -> FastAPI:
    """The app on the store at ``url`` (default: ``THREADBOX_URL``, else ./threadbox.db)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with threadbox.aio.open(url) as amb:  # closed at shutdown: its iterators end
            app.state.mailbox = amb
            yield

    app = FastAPI(title="chat on threadbox", lifespan=lifespan)

    def mailbox(request: Request) -> AsyncMailbox:
        amb: AsyncMailbox = request.app.state.mailbox
        return amb

    @app.post("/threads/{thread_id}/messages", status_code=202)
    async def say(thread_id: str, said: Said, request: Request) -> dict[str, Any]:
        mode = DeliveryMode.next_step() if said.steer else DeliveryMode.new_run()
        try:
            [entry] = await mailbox(request).deliver(thread_id, [Message.user(said.text)], mode)
        except InvalidInput as bad:
            raise HTTPException(422, f"{bad.field}: {bad}") from None
        return {"pending_id": entry.pending_id, "position": entry.position}

    @app.get("/threads/{thread_id}/messages")
    async def conversation(thread_id: str, request: Request) -> list[dict[str, str]]:
        try:
            committed = await mailbox(request).committed(thread_id)
        except ThreadNotFound:
            raise HTTPException(404, f"no thread {thread_id!r}") from None
        return [{"role": m.message.role, "text": m.message.text} for m in committed]

    @app.get("/threads/{thread_id}/events")
    async def events(
        thread_id: str, request: Request, after_version: int = 0, wait: float = 0.0
    ) -> list[dict[str, Any]]:
        if after_version < 0:
            raise HTTPException(422, "after_version must be >= 0")
        amb = mailbox(request)
        found: list[RecordedEvent] = []
        async for event in amb.watch(thread_id, after_version):  # what is there now
            found.append(event)
            if len(found) == 100:
                break
        if not found and wait > 0:  # else the first event within ``wait`` seconds
            async for event in amb.watch(thread_id, after_version, timeout=min(wait, 30.0)):
                found.append(event)
                break
        return [{"version": e.version, "type": e.type} for e in found]

    return app


app = create_app()
