"""How a realtime connection's events are read and written: beta or GA, chosen at connect time.

The session works on beta's shapes (``protocol.realtime``, ``protocol.realtime_events``); a
``Wire`` turns what the client sends into them (``decode``) and what the session says into what
the client reads (``encode``, one event or more). ``BetaWire`` passes them as they are;
``GAWire`` maps the GA session, items, options and event names (``protocol.realtime_ga``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from msgspec import UNSET

from llmux.protocol import realtime_ga as ga
from llmux.protocol import realtime_ga_events as gae
from llmux.protocol.errors import InvalidRequest
from llmux.protocol.realtime import (
    AnyClientEvent,
    ContentPart,
    Item,
    ItemCreate,
    ResponseCreate,
    ResponseOptions,
    Session,
    SessionUpdate,
    SessionUpdateEvent,
    TurnDetection,
    new_id,
)
from llmux.protocol.realtime_events import (
    ItemCreated,
    ItemRetrieved,
    OutputItemAdded,
    OutputItemDone,
    Response,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
)

_encode = msgspec.json.Encoder().encode


class Wire(Protocol):
    name: str

    def decode(self, raw: str | bytes) -> AnyClientEvent: ...

    def encode(self, event: ServerEvent) -> list[bytes]: ...


class BetaWire:
    """``OpenAI-Beta: realtime=v1``: the session's own shapes, as they are."""

    name = "beta"
    _decode = staticmethod(msgspec.json.Decoder(AnyClientEvent).decode)

    def decode(self, raw: str | bytes) -> AnyClientEvent:
        return self._decode(raw)

    def encode(self, event: ServerEvent) -> list[bytes]:
        return [_encode(event)]


_PATH = re.compile(r" - at `\$\.(.+)`$")


class GAWire:
    """The GA Realtime API (no ``OpenAI-Beta`` header)."""

    name = "ga"
    _decode = staticmethod(msgspec.json.Decoder(ga.AnyClientEventIn).decode)

    def __init__(self) -> None:
        self._output_items: set[str] = set()
        """Items a response writes: ``conversation.item.done`` waits for ``output_item.done``."""

    # ---- client events --------------------------------------------------------------------------

    def decode(self, raw: str | bytes) -> AnyClientEvent:
        try:
            event = self._decode(raw)
        except msgspec.ValidationError as exc:  # named, like a field llmux refuses
            found = _PATH.search(str(exc))
            param = found.group(1) if found else None
            raise InvalidRequest(f"Invalid client event: {exc}", code="invalid_event", param=param) from None
        if isinstance(event, ga.SessionUpdateEventIn):
            return SessionUpdateEvent(event_id=event.event_id, session=session_update(event.session))
        if isinstance(event, ga.ItemCreateIn):
            return ItemCreate(
                event_id=event.event_id, item=item_in(event.item), previous_item_id=event.previous_item_id
            )
        if isinstance(event, ga.ResponseCreateIn):
            return ResponseCreate(event_id=event.event_id, response=response_options(event.response))
        return event

    # ---- server events --------------------------------------------------------------------------

    def encode(self, event: ServerEvent) -> list[bytes]:
        out: list[Any]
        if isinstance(event, SessionCreated):
            out = [gae.SessionCreatedOut(event_id=event.event_id, session=session_out(event.session))]
        elif isinstance(event, SessionUpdated):
            out = [gae.SessionUpdatedOut(event_id=event.event_id, session=session_out(event.session))]
        elif isinstance(event, ItemCreated):
            item = item_out(event.item)
            out = [gae.ItemAddedOut(event_id=event.event_id, item=item, previous_item_id=event.previous_item_id)]
            if event.item.id not in self._output_items:  # the client's, or committed audio: complete now
                out.append(gae.ItemDoneOut(item=item, previous_item_id=event.previous_item_id))
        elif isinstance(event, ItemRetrieved):
            out = [gae.ItemRetrievedOut(event_id=event.event_id, item=item_out(event.item))]
        elif isinstance(event, OutputItemAdded):
            self._output_items.add(event.item.id)
            out = [
                gae.OutputItemAddedOut(
                    event_id=event.event_id,
                    response_id=event.response_id,
                    output_index=event.output_index,
                    item=item_out(event.item),
                )
            ]
        elif isinstance(event, OutputItemDone):
            item = item_out(event.item)
            done = gae.OutputItemDoneOut(
                event_id=event.event_id, response_id=event.response_id, output_index=event.output_index, item=item
            )
            out = [done, gae.ItemDoneOut(item=item)]
            self._output_items.discard(event.item.id)
        elif isinstance(event, ResponseCreated):
            out = [gae.ResponseCreatedOut(event_id=event.event_id, response=response_out(event.response))]
        elif isinstance(event, ResponseDone):  # a cancelled response's items are done too, unfinished
            out = []
            for unfinished in [i for i in event.response.output if i.id in self._output_items]:
                self._output_items.discard(unfinished.id)
                item = msgspec.structs.replace(item_out(unfinished), status="incomplete")
                out.append(gae.ItemDoneOut(item=item))
            out.append(gae.ResponseDoneOut(event_id=event.event_id, response=response_out(event.response)))
        elif (renamed := gae.RENAMED.get(str(event.__struct_config__.tag))) is not None:
            raw = msgspec.to_builtins(event)
            raw["type"] = renamed
            out = [raw]
        else:
            out = [event]
        return [_encode(e) for e in out]


# ---- GA → the session's shapes ----------------------------------------------------------------


def _modalities(output: Sequence[str]) -> list[Any]:
    """GA names one output modality; an audio answer comes with its transcript (beta's pair)."""
    return ["text", "audio"] if "audio" in output else ["text"]


def _tool_choice(choice: ga.ToolChoice) -> Any:
    """A forced function as the session keeps it (beta's shape); the chat request names it its own way."""
    if isinstance(choice, ga.FunctionChoice):
        return {"type": "function", "name": choice.name}
    return choice


def session_update(update: ga.SessionUpdateIn) -> SessionUpdate:
    for beta, where in ga.BETA_ONLY.items():
        if getattr(update, beta) is not UNSET:
            raise InvalidRequest(
                f"session.{beta} is a beta field: GA has session.{where} (or connect with OpenAI-Beta: realtime=v1).",
                param=f"session.{beta}",
                code="unknown_parameter",
            )
    changes: dict[str, Any] = {}
    for name in ("model", "instructions", "speech_model", "temperature"):
        if (value := getattr(update, name)) is not UNSET:
            changes[name] = value
    if update.output_modalities is not UNSET:
        changes["modalities"] = _modalities(update.output_modalities)
    if update.max_output_tokens is not UNSET:
        changes["max_response_output_tokens"] = update.max_output_tokens
    if update.tools is not UNSET:
        changes["tools"] = update.tools
    if update.tool_choice is not UNSET:
        changes["tool_choice"] = _tool_choice(update.tool_choice)
    audio = update.audio
    if audio is not UNSET:
        if audio.input is not UNSET:
            if audio.input.transcription is not UNSET:
                changes["input_audio_transcription"] = audio.input.transcription
            td = audio.input.turn_detection
            if td is not UNSET:
                changes["turn_detection"] = None if td is None else _turn_detection(td)
        if audio.output is not UNSET and audio.output.voice is not UNSET:
            changes["voice"] = audio.output.voice
    return SessionUpdate(**changes)


def _turn_detection(td: ga.TurnDetectionIn) -> TurnDetection:
    given = {f: getattr(td, f) for f in TurnDetection.__struct_fields__ if f != "type" and getattr(td, f) is not None}
    return TurnDetection(**given)


_CONTENT_IN = {"output_text": "text", "output_audio": "audio"}


def item_in(item: ga.ItemIn) -> Item:
    content = None
    if item.content is not None:
        content = [
            ContentPart(type=_CONTENT_IN.get(c.type, c.type), text=c.text, audio=c.audio, transcript=c.transcript)  # type: ignore[arg-type]
            for c in item.content
        ]
    fields = {f: getattr(item, f) for f in ("type", "status", "role", "call_id", "name", "arguments", "output")}
    return Item(id=item.id or new_id("item"), content=content, **fields)


def response_options(options: ga.ResponseOptionsIn) -> ResponseOptions:
    output = options.audio.output if options.audio is not None else None
    return ResponseOptions(
        modalities=None if options.output_modalities is None else _modalities(options.output_modalities),
        instructions=options.instructions,
        voice=output.voice if output is not None else None,
        temperature=options.temperature,
        max_response_output_tokens=options.max_output_tokens,
        tools=options.tools,
        tool_choice=None if options.tool_choice is None else _tool_choice(options.tool_choice),
        conversation=options.conversation,
    )


# ---- the session's shapes → GA ----------------------------------------------------------------


def session_out(session: Session) -> gae.SessionOut:
    audio = gae.AudioOut(
        input=gae.AudioInputOut(
            format=gae.PcmFormatOut(),
            transcription=session.input_audio_transcription,
            turn_detection=session.turn_detection,
        ),
        output=gae.AudioOutputOut(format=gae.PcmFormatOut(), voice=session.voice),
    )
    return gae.SessionOut(
        id=session.id,
        model=session.model,
        output_modalities=["audio"] if "audio" in session.modalities else ["text"],
        instructions=session.instructions,
        audio=audio,
        tools=session.tools,
        tool_choice=session.tool_choice,
        max_output_tokens=session.max_response_output_tokens,
        speech_model=session.speech_model,
        temperature=session.temperature,
    )


_CONTENT_OUT = {"text": "output_text", "audio": "output_audio"}


def item_out(item: Item) -> gae.ItemOut:
    content = None
    if item.type == "message":
        content = [
            gae.ContentOut(type=_CONTENT_OUT.get(p.type, p.type), text=p.text, audio=p.audio, transcript=p.transcript)
            for p in item.content or ()
        ]
    name = arguments = None
    if item.type == "function_call":
        name, arguments = item.name or "", item.arguments or ""
    return gae.ItemOut(
        id=item.id,
        type=item.type,
        object=item.object,
        status=item.status,
        role=item.role,
        content=content,
        call_id=item.call_id,
        name=name,
        arguments=arguments,
        output=(item.output or "") if item.type == "function_call_output" else None,
    )


def response_out(response: Response) -> gae.ResponseOut:
    return gae.ResponseOut(
        id=response.id,
        status=response.status,
        status_details=response.status_details,
        output=[item_out(i) for i in response.output],
        usage=response.usage,
        output_modalities=["audio"] if "audio" in response.modalities else ["text"],
    )
