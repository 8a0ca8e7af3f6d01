"""The emitter every decision writes its events with: one place stamps the thread id, the
consecutive versions and the decision's time (a freeze emits several events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .events import AnyThreadEvent
from .thread import Thread

E = TypeVar("E", bound=AnyThreadEvent)


@dataclass
class Emitter:
    """Collects a decision's events; ``emit(EventType, **payload)`` adds the next one."""

    state: Thread
    now: datetime
    events: list[AnyThreadEvent] = field(default_factory=list)

    @property
    def version(self) -> int:
        """The thread's version once the events emitted so far are applied."""
        return self.state.version + len(self.events)

    def __call__(self, event_type: type[E], **payload: Any) -> E:
        """Emit one event of ``event_type`` with ``payload``, at the next version."""
        event = event_type(
            thread_id=self.state.thread_id, version=self.version + 1, timestamp=self.now, **payload
        )
        self.events.append(event)
        return event
