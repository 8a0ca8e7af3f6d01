"""Value types of docs/semantics.md §2-§3: messages, their content parts, and delivery modes."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

MAX_ID_LENGTH = 200


_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_id(value: str, what: str, *, blank_ok: bool = False) -> str:
    """A caller-chosen id: 1 to 200 characters, no control characters; non-blank unless
    ``blank_ok`` (thread ids: docs/semantics.md §1 asks only for 1-200 characters)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    if not value if blank_ok else not value.strip():
        raise ValueError(f"{what} must not be {'empty' if blank_ok else 'blank'}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        kind = "a lone surrogate" if "\ud800" <= bad.group() <= "\udfff" else "a control character"
        raise ValueError(f"{what} must not contain {kind} (at index {bad.start()})")
    return value


class _Value(BaseModel):
    """A frozen value; unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)


class DeliveryBoundary(StrEnum):
    """The run boundary at which a pending message may be consumed (docs/semantics.md §3)."""

    INTERRUPT = "interrupt"
    NEXT_STEP = "next_step"
    ON_NATURAL_END = "on_natural_end"
    RESUME_INPUT = "resume_input"
    NEW_RUN = "new_run"


class DeliveryGranularity(StrEnum):
    """Whether a freeze takes the message alone (``one``) or with its neighbours (``batch``)."""

    ONE = "one"
    BATCH = "batch"


class Role(StrEnum):
    """Who a message is from."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


class Visibility(StrEnum):
    """``internal`` messages are for the model; external readers skip them by default."""

    ALL = "all"
    INTERNAL = "internal"


# ---- content parts ---------------------------------------------------------------------------


class UrlSource(_Value):
    """Media at a URL."""

    type: Literal["url"] = "url"
    url: str = Field(min_length=1)


class Base64Source(_Value):
    """Media inline, base64-encoded, with its media type."""

    type: Literal["base64"] = "base64"
    media_type: str = Field(min_length=1)
    data: str


Source = Annotated[UrlSource | Base64Source, Field(discriminator="type")]


class TextPart(_Value):
    """Text."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Value):
    """An image."""

    type: Literal["image"] = "image"
    source: Source


class DocumentPart(_Value):
    """A document, with an optional title."""

    type: Literal["document"] = "document"
    source: Source
    title: str | None = None


class ToolUsePart(_Value):
    """A call of a tool by the model: its id, the tool's name and the input."""

    type: Literal["tool_use"] = "tool_use"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, JsonValue] = Field(default_factory=dict)


ResultPart = Annotated[TextPart | ImagePart | DocumentPart, Field(discriminator="type")]


class ToolResultPart(_Value):
    """The result of a tool call (``tool_use_id``): text, or parts."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultPart]


ContentPart = Annotated[
    TextPart | ImagePart | DocumentPart | ToolUsePart | ToolResultPart,
    Field(discriminator="type"),
]


class Message(_Value):
    """One message of a thread. ``id`` None means "generate one at delivery"."""

    id: str | None = None
    role: Role
    content: list[ContentPart] = Field(min_length=1)
    tool_call_id: str | None = None
    visibility: Visibility = Visibility.ALL
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_is_valid(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "message id")

    @model_validator(mode="after")
    def _tool_call_id_matches_role(self) -> Self:
        if self.role is Role.TOOL:
            if self.tool_call_id is None or not self.tool_call_id.strip():
                raise ValueError("tool_call_id is required (non-blank) on a tool message")
        elif self.tool_call_id is not None:
            raise ValueError(f"tool_call_id is only allowed on tool messages, not {self.role}")
        return self

    @property
    def text(self) -> str:
        """The concatenated text parts."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def with_id(self, message_id: str) -> Message:
        """This message with ``message_id`` as its id."""
        return self if self.id == message_id else self.model_copy(update={"id": message_id})

    @classmethod
    def user(cls, text: str, id: str | None = None) -> Message:
        """A user message of one text part."""
        return cls(id=id, role=Role.USER, content=[TextPart(text=text)])

    @classmethod
    def assistant(cls, text: str, id: str | None = None) -> Message:
        """An assistant message of one text part."""
        return cls(id=id, role=Role.ASSISTANT, content=[TextPart(text=text)])

    @classmethod
    def system(cls, text: str, id: str | None = None) -> Message:
        """A system message of one text part."""
        return cls(id=id, role=Role.SYSTEM, content=[TextPart(text=text)])

    @classmethod
    def tool(cls, tool_call_id: str, text: str, id: str | None = None) -> Message:
        """A tool message answering the call ``tool_call_id``, of one text part."""
        return cls(id=id, role=Role.TOOL, content=[TextPart(text=text)], tool_call_id=tool_call_id)


class DeliveryMode(_Value):
    """When a pending message may be consumed. Every combination constructs
    (docs/semantics.md §3)."""

    boundary: DeliveryBoundary = DeliveryBoundary.NEW_RUN
    granularity: DeliveryGranularity = DeliveryGranularity.BATCH
    barrier: bool = False
    target_run_id: str | None = None
    fallback_to_new_run: bool = True

    @field_validator("target_run_id")
    @classmethod
    def _target_is_valid(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "target_run_id")

    @classmethod
    def interrupt(cls, granularity: DeliveryGranularity | str = "batch") -> DeliveryMode:
        """Consumed now: the running run is interrupted and a new run takes it."""
        return cls(
            boundary=DeliveryBoundary.INTERRUPT, granularity=DeliveryGranularity(granularity)
        )

    @classmethod
    def next_step(cls, granularity: DeliveryGranularity | str = "batch") -> DeliveryMode:
        """Consumed at the running run's next step (steering)."""
        return cls(
            boundary=DeliveryBoundary.NEXT_STEP, granularity=DeliveryGranularity(granularity)
        )

    @classmethod
    def on_natural_end(cls, granularity: DeliveryGranularity | str = "batch") -> DeliveryMode:
        """Consumed when the running run would end naturally: it continues with it."""
        return cls(
            boundary=DeliveryBoundary.ON_NATURAL_END, granularity=DeliveryGranularity(granularity)
        )

    @classmethod
    def new_run(cls, granularity: DeliveryGranularity | str = "batch") -> DeliveryMode:
        """Consumed by a new run, once no run is running (the default)."""
        return cls(boundary=DeliveryBoundary.NEW_RUN, granularity=DeliveryGranularity(granularity))

    @classmethod
    def resume_input(
        cls, run_id: str, granularity: DeliveryGranularity | str = "batch"
    ) -> DeliveryMode:
        """Consumed only by the waiting run ``run_id``, when it resumes."""
        return cls(
            boundary=DeliveryBoundary.RESUME_INPUT,
            granularity=DeliveryGranularity(granularity),
            target_run_id=run_id,
            fallback_to_new_run=False,
        )

    def targeted_to_run(self, run_id: str, fallback_to_new_run: bool) -> DeliveryMode:
        """This mode aimed at ``run_id`` (taken by a new run if that one ends, with
        ``fallback_to_new_run``)."""
        return self.model_copy(
            update={
                "target_run_id": check_id(run_id, "target_run_id"),
                "fallback_to_new_run": fallback_to_new_run,
            }
        )

    def with_barrier(self, barrier: bool = True) -> DeliveryMode:
        """This mode as a barrier: the last of its batch, and nothing passes it."""
        return self.model_copy(update={"barrier": barrier})


def dump_json(value: BaseModel) -> dict[str, Any]:
    """The JSON form of a value (enums as their strings), without defaults dropped."""
    return value.model_dump(mode="json")
