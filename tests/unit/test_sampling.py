"""Sampling: request over virtual-model defaults; what cannot be honoured is a 400 naming it;
OpenAI's additive penalties on transformers."""

from __future__ import annotations

import msgspec
import pytest
import torch

from llmux.chat.sampling import sampling_params
from llmux.engines.transformers_sampling import OpenAIPenalties
from llmux.protocol.chat import ChatCompletionRequest
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Behaviour, Sampling

HI = [{"role": "user", "content": "hi"}]


def chat(**fields: object) -> ChatCompletionRequest:
    return msgspec.convert({"model": "m", "messages": HI, **fields}, ChatCompletionRequest)


def test_the_request_wins_over_the_virtual_models_defaults() -> None:
    behaviour = Behaviour(thinking=False, sampling=Sampling(temperature=0.7, top_k=20, presence_penalty=1.5))
    params = sampling_params(chat(temperature=0.1, top_k=0), behaviour, "qwen3.5")
    assert (params.temperature, params.top_k, params.presence_penalty) == (0.1, 0, 1.5)
    assert sampling_params(chat(), behaviour, "qwen3.5").temperature == 0.7


@pytest.mark.parametrize(("fields", "param"), [
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"store": True}, "store"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"verbosity": "low"}, "verbosity"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
])
def test_what_cannot_be_honoured_is_refused(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        sampling_params(chat(**fields), Behaviour(thinking=False), "qwen3.5")
    assert exc.value.param == param


@pytest.mark.parametrize(("behaviour", "family"), [(Behaviour(), "qwen3.5"), (Behaviour(thinking=True), "qwen3.5"),
                                                    (Behaviour(), "gpt-oss")])
def test_structured_output_needs_a_turn_that_answers_directly(behaviour: Behaviour, family: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        sampling_params(chat(response_format={"type": "json_object"}), behaviour, family)
    assert exc.value.param == "response_format"
    assert sampling_params(chat(response_format={"type": "json_object"}), Behaviour(thinking=False), "qwen3.5").json_schema


def test_openai_penalties_count_only_the_answer() -> None:
    prompt = [5, 5, 5]
    answer = [1, 1, 2]
    scores = torch.zeros(1, 6)
    out = OpenAIPenalties(len(prompt), presence=0.5, frequency=0.25)(torch.tensor([prompt + answer]), scores)
    assert out[0].tolist() == [0.0, -1.0, -0.75, 0.0, 0.0, 0.0]
