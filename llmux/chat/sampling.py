"""A chat request's sampling: the request's values over the virtual model's defaults, and a 400
naming every known parameter llmux cannot honour (none is silently dropped).

Structured output (``response_format``) constrains decoding in the runtime (llama.cpp's
grammars, xgrammar on transformers) to JSON matching the schema. It is refused where the
answer does not start with the JSON itself: on a turn that reasons first (a thinking Qwen,
gpt-oss's analysis channel) the constraint would apply to the reasoning, and with tools it
would forbid the tool call.
"""

from __future__ import annotations

import json

from llmux.engines.base import SamplingParams
from llmux.protocol.chat import ChatCompletionRequest
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Behaviour

JSON_OBJECT = '{"type": "object"}'


def refuse_unsupported(request: ChatCompletionRequest) -> None:
    checks: list[tuple[bool, str, str]] = [
        (
            request.top_logprobs is not None and not request.logprobs,
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`.",
        ),
        (bool(request.logit_bias), "logit_bias", "`logit_bias` is not supported."),
        (
            request.parallel_tool_calls is False,
            "parallel_tool_calls",
            "Turning parallel tool calls off is not supported on chat completions.",
        ),
        (
            bool(request.modalities and request.modalities != ["text"]),
            "modalities",
            "Only text output; for speech use /v1/audio/speech.",
        ),
        (request.audio is not None, "audio", "Audio output is not supported; use /v1/audio/speech."),
        (request.prediction is not None, "prediction", "Predicted outputs are not supported."),
        (request.web_search_options is not None, "web_search_options", "Web search is not supported."),
        (request.functions is not None, "functions", "The legacy `functions` parameter is not supported: use `tools`."),
        (
            request.function_call is not None,
            "function_call",
            "The legacy `function_call` is not supported: use `tool_choice`.",
        ),
        (request.store is True, "store", "llmux stores no completions."),
        (
            request.service_tier not in (None, "auto", "default"),
            "service_tier",
            "Only the `auto`/`default` service tier exists here.",
        ),
        (request.verbosity not in (None, "medium"), "verbosity", "Only `medium` verbosity is supported."),
    ]
    for failed, param, message in checks:
        if failed:
            raise InvalidRequest(message, param=param, code="unsupported_parameter")


def sampling_params(request: ChatCompletionRequest, behaviour: Behaviour, family: str | None) -> SamplingParams:
    refuse_unsupported(request)
    defaults = behaviour.sampling
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())

    def pick(name: str) -> float | None:
        value = getattr(request, name)
        return getattr(defaults, name) if value is None else value  # type: ignore[no-any-return]  # both fields are float | None

    return SamplingParams(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        top_k=request.top_k if request.top_k is not None else defaults.top_k,
        min_p=pick("min_p"),
        presence_penalty=pick("presence_penalty"),
        frequency_penalty=pick("frequency_penalty"),
        repetition_penalty=pick("repetition_penalty"),
        stop=stop,
        seed=request.seed,
        json_schema=_json_schema(request, behaviour, family),
        logprobs=_logprobs(request, behaviour, family),
    )


def _reasons_first(behaviour: Behaviour, family: str | None) -> bool:
    return family == "gpt-oss" or (family == "qwen3.5" and behaviour.thinking is not False)


def _logprobs(request: ChatCompletionRequest, behaviour: Behaviour, family: str | None) -> int | None:
    if not request.logprobs:
        return None
    if _reasons_first(behaviour, family):
        raise InvalidRequest(
            f"{request.model!r} reasons before it answers; log probabilities need a model that answers "
            "directly (e.g. an Instruct variant).",
            param="logprobs",
            code="unsupported_parameter",
        )
    return request.top_logprobs or 0


def _json_schema(request: ChatCompletionRequest, behaviour: Behaviour, family: str | None) -> str | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if _reasons_first(behaviour, family):
        raise InvalidRequest(
            f"{request.model!r} reasons before it answers; structured output needs a model that answers "
            "directly (e.g. an Instruct variant).",
            param="response_format",
            code="unsupported_parameter",
        )
    if request.tools and request.tool_choice != "none":
        raise InvalidRequest(
            "`response_format` together with tools is not supported.",
            param="response_format",
            code="unsupported_parameter",
        )
    if fmt.type == "json_object":
        return JSON_OBJECT
    if fmt.json_schema is None or not fmt.json_schema.schema:
        raise InvalidRequest("A `json_schema` response format needs its `schema`.", param="response_format.json_schema")
    return json.dumps(fmt.json_schema.schema)
