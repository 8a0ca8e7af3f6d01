"""An asyncio agent loop on threadbox: steering, queueing, interrupt and rollback.

    python examples/agent_loop.py [STORE_URL]     # default: a SQLite file in a temp folder

``drive`` and ``serve`` are the loop (docs/embedding.md, "The async agent loop"). The rest is a
scripted conversation: a fake model that answers the latest user message, and users who type
while it thinks (``FakeModel.meanwhile``): a steer for the current run, a message queued for the
next one, then an interrupt that rolls back the busy run's output.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import threadbox.aio
from threadbox import DeliveryMode, Message
from threadbox.aio import AsyncMailbox, Run
from threadbox.errors import RunInterrupted

Model = Callable[[list[Message]], Awaitable[str]]


async def drive(amb: AsyncMailbox, run: Run, model: Model) -> None:
    """One run: call the model, commit its reply, take in what arrived meanwhile, until done."""
    context = [m.message for m in await amb.committed(run.thread_id)]
    try:
        while True:
            reply = await model(context)
            if run.interrupted:  # another writer interrupted this run: drop the reply
                return
            context += [m.message for m in await run.output([Message.assistant(reply)])]
            more = await run.step() or await run.end()  # steering now, else the run's end
            if not more:
                await run.finish()
                return
            context += [m.message for m in more]
    except RunInterrupted as stopped:  # interrupted between the check and the write
        print(f"run {run.id} was interrupted by run {stopped.by_run_id}")
    finally:
        await run.close()


async def serve(amb: AsyncMailbox, thread_id: str, model: Model, idle: float) -> None:
    """Run the agent whenever work arrives on the thread; return after ``idle`` quiet seconds."""
    while (run := await amb.start_run(thread_id, wait=True, timeout=idle)) is not None:
        await drive(amb, run, model)


async def interrupt(
    amb: AsyncMailbox, thread_id: str, text: str, model: Model
) -> asyncio.Task[None]:
    """A user interrupts the busy run: a new run reads ``text`` at once and the busy run's
    outputs are hidden (rollback). The new run is driven beside the old one's loop, which sees
    ``run.interrupted`` and stops; the task driving the new run is returned."""
    await amb.deliver(thread_id, [Message.user(text)], DeliveryMode.interrupt())
    run = await amb.start_run(thread_id, interrupt=True, rollback=True)
    assert run is not None
    return asyncio.create_task(drive(amb, run, model))


class FakeModel:
    """Answers "You said: <the latest user message>". ``meanwhile[n]`` runs during its n-th
    call (from 1): users typing while it thinks."""

    def __init__(self) -> None:
        self.calls = 0
        self.meanwhile: dict[int, Callable[[], Awaitable[None]]] = {}

    async def __call__(self, context: list[Message]) -> str:
        self.calls += 1
        if (users := self.meanwhile.get(self.calls)) is not None:
            await users()
        await asyncio.sleep(0.01)
        return "You said: " + [m for m in context if m.role == "user"][-1].text


async def conversation(url: str, thread_id: str = "trip") -> tuple[list[str], list[str]]:
    """The scripted conversation; the visible committed texts, and the hidden ones."""
    async with threadbox.aio.open(url) as amb:
        model = FakeModel()
        interrupting: list[asyncio.Task[None]] = []

        async def steer_and_queue() -> None:  # while run 1 thinks about its first message
            await amb.deliver(thread_id, [Message.user("Make it 3 days")], DeliveryMode.next_step())
            await amb.deliver(thread_id, [Message.user("Then book a hotel")])  # for the next run

        async def steer_again() -> None:  # run 2 thinks about the hotel
            await amb.deliver(thread_id, [Message.user("A cheap one")], DeliveryMode.next_step())

        async def change_of_mind() -> None:  # run 2 thinks again: the user stops it
            interrupting.append(await interrupt(amb, thread_id, "Cancel that, find flights", model))

        model.meanwhile = {1: steer_and_queue, 3: steer_again, 4: change_of_mind}
        await amb.deliver(thread_id, [Message.user("Plan a trip to Lisbon")])
        await serve(amb, thread_id, model, idle=1.0)
        await asyncio.gather(*interrupting)  # the interrupting run, driven beside serve
        every = await amb.committed(thread_id, include_hidden=True)
        visible = [m.message.text for m in every if m.visible]
        hidden = [m.message.text for m in every if not m.visible]
        for m in every:
            shown = m.message.text if m.visible else f"(hidden) {m.message.text}"
            print(f"{m.seq:>2} {m.message.role:<9} {shown}")
        return visible, hidden


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = argv[1] if len(argv) > 1 else f"sqlite:///{Path(folder) / 'agent.db'}"
        asyncio.run(conversation(url))


if __name__ == "__main__":
    main(sys.argv)
