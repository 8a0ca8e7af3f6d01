"""Messages between threadbox and AG-UI, both ways (docs/ag-ui.md; ADR 0014).

threadbox to AG-UI: a message becomes one AG-UI message with its own id (user, system, assistant
with its ``tool_use`` parts as tool calls, tool), preceded by one AG-UI tool message for each of
its ``tool_result`` parts, whose id is ``<message id>#<part index>``. Images and documents travel
as AG-UI media parts on user and tool messages; AG-UI's system and assistant messages hold text
only.

AG-UI to threadbox: a posted message becomes one threadbox message with the same id; a
``developer`` message becomes a ``system`` one; ``activity`` and ``reasoning`` messages (the
front end's own, never sent to a model) become none. A tool message's ``error`` is kept as
``metadata.error``.
"""

from __future__ import annotations

import json
from typing import Any

import ag_ui.core as ag
from pydantic import JsonValue, ValidationError
from threadbox import Message, Role
from threadbox.domain.errors import InvalidInput
from threadbox.domain.values import (
    Base64Source,
    DocumentPart,
    ImagePart,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    UrlSource,
)

# The AG-UI messages threadbox messages become.
AgMessage = ag.UserMessage | ag.SystemMessage | ag.AssistantMessage | ag.ToolMessage

ERROR_KEY = "error"  # where a posted tool message's ``error`` is kept in threadbox metadata

MediaPart = TextPart | ImagePart | DocumentPart


def tool_result_id(message_id: str, index: int) -> str:
    """The id of the AG-UI tool message made of part ``index`` (a ``tool_result``)."""
    return f"{message_id}#{index}"


# ---- threadbox to AG-UI ----------------------------------------------------------------------


def _ag_source(source: UrlSource | Base64Source) -> ag.UrlSource | ag.DataSource:
    if isinstance(source, UrlSource):
        return ag.UrlSource(value=source.url)
    return ag.DataSource(value=source.data, mime_type=source.media_type)


def _ag_part(part: MediaPart) -> ag.TextPart | ag.ImagePart | ag.DocumentPart:
    if isinstance(part, TextPart):
        return ag.TextPart(text=part.text)
    if isinstance(part, ImagePart):
        return ag.ImagePart(source=_ag_source(part.source))
    title = {"title": part.title} if part.title is not None else None
    return ag.DocumentPart(source=_ag_source(part.source), metadata=title)


def _ag_content(parts: list[MediaPart]) -> str | list[Any]:
    """Plain text when the parts are text only (what most front ends render), else parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return [_ag_part(p) for p in parts]


def _arguments(call: ToolUsePart) -> str:
    return json.dumps(call.input, ensure_ascii=False, separators=(",", ":"))


def to_ag_ui(message: Message) -> list[AgMessage]:
    """The AG-UI messages a (delivered or committed, so identified) message shows as."""
    if message.id is None:
        raise ValueError("only a delivered message, which has an id, has AG-UI messages")
    message_id = message.id
    kept = {
        k: v for k, v in message.metadata.items() if message.role is not Role.TOOL or k != ERROR_KEY
    }
    metadata: dict[str, Any] | None = kept or None  # a tool message's error is its own field
    shown: list[AgMessage] = []
    body: list[MediaPart] = []
    calls: list[ToolUsePart] = []
    for index, part in enumerate(message.content):
        if isinstance(part, ToolResultPart):
            result = (
                [TextPart(text=part.content)] if isinstance(part.content, str) else part.content
            )
            shown.append(
                ag.ToolMessage(
                    id=tool_result_id(message_id, index),
                    tool_call_id=part.tool_use_id,
                    content=_ag_content(list(result)),
                )
            )
        elif isinstance(part, ToolUsePart):
            calls.append(part)
        else:
            body.append(part)
    text = "".join(p.text for p in body if isinstance(p, TextPart))
    if message.role is Role.TOOL:
        assert message.tool_call_id is not None  # a tool message always has one
        error = message.metadata.get(ERROR_KEY)
        shown.append(
            ag.ToolMessage(
                id=message_id,
                tool_call_id=message.tool_call_id,
                content=_ag_content(body),
                error=error if isinstance(error, str) else None,
                metadata=metadata,
            )
        )
    elif message.role is Role.ASSISTANT:
        tool_calls = [
            ag.ToolCall(id=c.id, function=ag.FunctionCall(name=c.name, arguments=_arguments(c)))
            for c in calls
        ]
        shown.append(
            ag.AssistantMessage(
                id=message_id,
                content=text if body or not calls else None,
                tool_calls=tool_calls or None,
                metadata=metadata,
            )
        )
    elif message.role is Role.SYSTEM:
        shown.append(ag.SystemMessage(id=message_id, content=text, metadata=metadata))
    elif body or not shown:  # a user message of tool results alone is those results
        shown.append(ag.UserMessage(id=message_id, content=_ag_content(body), metadata=metadata))
    return shown


def canonical(message: AgMessage) -> str:
    """What two AG-UI messages must share to be the same message: everything but metadata."""
    fields = message.model_dump(mode="json", by_alias=True, exclude={"metadata"})
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


# ---- AG-UI to threadbox ----------------------------------------------------------------------


def _invalid(error: ValidationError, where: str) -> InvalidInput:
    first = error.errors()[0]
    field = ".".join(str(p) for p in (where, *first["loc"]))
    return InvalidInput(f"invalid {field}: {first['msg']}", field)


def _source(source: Any, where: str) -> UrlSource | Base64Source:
    if isinstance(source, ag.DataSource):
        return Base64Source(media_type=source.mime_type, data=source.value)
    if isinstance(source, ag.UrlSource):
        return UrlSource(url=source.value)
    raise InvalidInput(
        f"invalid {where}: a {source.type!r} source cannot be stored; send the data or a URL",
        where,
    )


def _part(part: Any, where: str) -> MediaPart:
    try:
        return _media(part, where)
    except ValidationError as error:
        raise _invalid(error, where) from None


def _media(part: Any, where: str) -> MediaPart:
    if isinstance(part, ag.TextPart):
        return TextPart(text=part.text)
    if isinstance(part, ag.ImagePart):
        return ImagePart(source=_source(part.source, f"{where}.source"))
    if isinstance(part, ag.DocumentPart):
        title = part.metadata.get("title") if isinstance(part.metadata, dict) else None
        return DocumentPart(
            source=_source(part.source, f"{where}.source"),
            title=title if isinstance(title, str) else None,
        )
    raise InvalidInput(
        f"invalid {where}: threadbox messages hold text, images and documents, "
        f"not {part.type!r} parts",
        where,
    )


def _parts(content: str | list[Any], where: str) -> list[MediaPart]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    return [_part(p, f"{where}.{n}") for n, p in enumerate(content)]


def _tool_use(call: ag.ToolCall, where: str) -> ToolUsePart:
    try:
        arguments = json.loads(call.function.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        field = f"{where}.function.arguments"
        raise InvalidInput(f"invalid {field}: must be a JSON object", field)
    try:
        return ToolUsePart(id=call.id, name=call.function.name, input=arguments)
    except ValidationError as error:
        raise _invalid(error, where) from None


def from_ag_ui(message: Any, where: str) -> Message | None:
    """The threadbox message a posted AG-UI message delivers, or None for the front end's own
    (activity, reasoning). ``where`` names the message in errors (``messages.3``)."""
    metadata: dict[str, JsonValue] = dict(message.metadata or {})
    fields: dict[str, Any]
    try:
        if isinstance(message, ag.UserMessage):
            fields = {"role": Role.USER, "content": _parts(message.content, f"{where}.content")}
        elif isinstance(message, ag.SystemMessage | ag.DeveloperMessage):
            fields = {"role": Role.SYSTEM, "content": [TextPart(text=message.content)]}
        elif isinstance(message, ag.AssistantMessage):
            calls = message.tool_calls or []
            text = message.content
            content: list[Any] = [TextPart(text=text)] if text is not None or not calls else []
            content += [_tool_use(c, f"{where}.toolCalls.{n}") for n, c in enumerate(calls)]
            fields = {"role": Role.ASSISTANT, "content": content}
        elif isinstance(message, ag.ToolMessage):
            if message.error is not None:
                metadata[ERROR_KEY] = message.error
            fields = {
                "role": Role.TOOL,
                "content": _parts(message.content, f"{where}.content"),
                "tool_call_id": message.tool_call_id,
            }
        else:
            return None
        return Message(id=message.id, metadata=metadata, **fields)
    except ValidationError as error:
        raise _invalid(error, where) from None
