"""What a realtime session is configured with, checked against the registry, and how its
conversation becomes a chat request.

Every model a session names is resolved when it is named (``session.update``), so a typo is an
``error`` event then, not a failure in the middle of a turn. Defaults: the chat model of the
connection URL (else the first chat model configured), the first ASR and TTS models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET

from llmux.engines.base import ASR_SAMPLE_RATE, TranscribeOptions
from llmux.protocol.chat import ChatCompletionRequest
from llmux.protocol.errors import InvalidRequest, ModelNotFound
from llmux.protocol.realtime import Item, ResponseOptions, Session, SessionTool, SessionUpdate, new_id
from llmux.registry import ModelType, Registry
from llmux.registry.registry import unknown_model
from llmux.residency.controller import ResidencyController
from llmux.services.access import allowed
from llmux.services.audio import AudioService, TranscriptionJob
from llmux.services.chat import ChatService
from llmux.services.realtime_conversation import Speech


class RealtimeService:
    def __init__(
        self, registry: Registry, controller: ResidencyController, chat: ChatService, audio: AudioService
    ) -> None:
        self.registry, self.controller, self.chat, self.audio = registry, controller, chat, audio
        self.observe: Callable[[dict[str, Any]], None] | None = None
        """Sees each response's record when it ends (the app hands it the metrics, rate limits
        and usage, as the HTTP middleware does for a request)."""

    def resolve(self, name: str, kind: ModelType, param: str) -> None:
        """``name`` is a served model of ``kind`` that the session's key may use (else a 404
        worded like an unknown model, as the HTTP endpoints answer)."""
        try:
            self.registry.resolve(name, expect=kind)
        except ModelNotFound as exc:
            raise ModelNotFound(exc.message, param=param) from None
        if not allowed(name):
            raise unknown_model(name)

    def _first(self, kind: ModelType) -> str | None:
        names = self.audio.models(kind)
        return names[0] if names else None

    def new_session(self, model: str | None) -> Session:
        """The session a connection starts with; raises (before the socket is accepted) for a
        ``model`` that is not a chat model."""
        llm = model or self._first(ModelType.LLM)
        if llm is None:
            raise ModelNotFound("No chat model is configured.", param="model")
        self.resolve(llm, ModelType.LLM, "model")
        session = Session(id=new_id("sess"), model=llm, speech_model=self._first(ModelType.TTS) or "")
        if self._first(ModelType.ASR) is None:
            raise ModelNotFound("No speech recognition model is configured.", param="input_audio_transcription.model")
        if not session.speech_model:
            session.modalities = ["text"]
        return session

    def speech(self, session: Session, options: ResponseOptions) -> Speech:
        if not session.speech_model:
            raise InvalidRequest("No speech model is configured: use modalities ['text'].", param="modalities")
        physical, voice, speak = self.audio.speech_voice(session.speech_model, options.voice or session.voice)
        return Speech(physical, voice, speak)

    async def transcribe(self, session: Session, audio: Any) -> str:
        settings = session.input_audio_transcription
        model = (settings.model if settings else None) or self._first(ModelType.ASR)
        assert model is not None
        virtual, physical = self.registry.resolve(model, expect=ModelType.ASR)
        language = (settings.language if settings else None) or virtual.behaviour.language or "en"
        options = TranscribeOptions(language=language, prompt=settings.prompt if settings else None)
        if audio.size < ASR_SAMPLE_RATE // 10:
            return ""
        transcript = await self.audio.transcribe_job(TranscriptionJob(physical.id, audio, options))
        return transcript.text


def merge_session(service: RealtimeService, session: Session, update: SessionUpdate) -> Session:
    """``session`` with what ``update`` sets, every model and voice it names checked."""
    changes = {f: getattr(update, f) for f in update.__struct_fields__ if getattr(update, f) is not UNSET}
    if "model" in changes:
        service.resolve(changes["model"], ModelType.LLM, "session.model")
    if changes.get("speech_model"):
        service.resolve(changes["speech_model"], ModelType.TTS, "session.speech_model")
    transcription = changes.get("input_audio_transcription")
    if transcription is not None and transcription.model is not None:
        service.resolve(transcription.model, ModelType.ASR, "session.input_audio_transcription.model")
    merged = msgspec.structs.replace(session, **changes)
    if "tool_choice" in changes or "tools" in changes:
        merged.tool_choice = tool_choice(merged.tool_choice, merged.tools, "session.tool_choice")
    if "audio" in merged.modalities:
        service.speech(merged, ResponseOptions())  # the voice exists (an OpenAI name means the default)
    return merged


def tool_choice(choice: str | dict[str, Any], tools: list[SessionTool], param: str) -> str | dict[str, Any]:
    """``choice`` as the session keeps it: a forced function as the Realtime API writes it,
    ``{"type": "function", "name": ...}`` (the chat completions shape, ``{"type": "function",
    "function": {"name": ...}}``, is read too), and one of ``tools`` (else an error naming ``param``)."""
    if not isinstance(choice, dict):
        return choice
    function = choice.get("function")
    name = choice.get("name") if function is None else function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str) or not name:
        raise InvalidRequest(
            'A tool choice is "auto", "none", "required" or {"type": "function", "name": ...}.', param=param
        )
    if name not in {t.name for t in tools}:
        raise InvalidRequest(f"{param} names the function {name!r}, which is not one of the tools.", param=param)
    return {"type": "function", "name": name}


def chat_request(session: Session, items: list[Item], options: ResponseOptions) -> ChatCompletionRequest:
    """The conversation as a chat completion request for the session's chat model."""
    messages: list[dict[str, Any]] = []
    instructions = options.instructions if options.instructions is not None else session.instructions
    if instructions:
        messages.append({"role": "system", "content": instructions})
    if options.conversation == "auto":
        for item in items:
            _append(messages, item)
    body: dict[str, Any] = {"model": session.model, "messages": messages}
    temperature = options.temperature if options.temperature is not None else session.temperature
    if temperature is not None:
        body["temperature"] = temperature
    limit = options.max_response_output_tokens or session.max_response_output_tokens
    if isinstance(limit, int):
        body["max_tokens"] = limit
    tools = options.tools if options.tools is not None else session.tools
    if tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in tools
        ]
        # Checked again here: the response's own tools may not hold the session's forced function.
        given, param = (
            (options.tool_choice, "response.tool_choice")
            if options.tool_choice is not None
            else (session.tool_choice, "session.tool_choice")
        )
        choice = tool_choice(given, tools, param)
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice["name"]}} if isinstance(choice, dict) else choice
        )
    try:
        return msgspec.convert(body, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"The conversation cannot be sent to the chat model: {exc}", param="response") from None


def _append(messages: list[dict[str, Any]], item: Item) -> None:
    if item.type == "function_call":
        call = {
            "id": item.call_id or item.id,
            "type": "function",
            "function": {"name": item.name or "", "arguments": item.arguments or ""},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        return
    if item.type == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": item.call_id or "", "content": item.output or ""})
        return
    text = " ".join(
        t for part in item.content or () if (t := part.text if part.text is not None else part.transcript)
    ).strip()
    if text and item.role is not None:
        messages.append({"role": item.role, "content": text})


def speaks(session: Session, options: ResponseOptions) -> bool:
    modalities = options.modalities if options.modalities is not None else session.modalities
    return "audio" in modalities
