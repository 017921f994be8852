"""Invariants of the ``openai`` backend that hold for any input: an upstream's error answer, of
any status and any body, becomes an OpenAI error with a status the client can act on; a request's
fields reach the upstream unchanged (only ``model`` renamed, defaults only where absent)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import httpx
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from llmux.engines.upstream import mapped_error
from llmux.registry import ModelType, load_models
from llmux.services.upstream import UpstreamService

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: msgspec.json.encode(v)),
    st.builds(lambda e: msgspec.json.encode({"error": e}), json_values),
)


@settings(deadline=None)
@given(status=st.integers(400, 599), body=bodies, retry=st.sampled_from(["", "5", "-1", "soon", "2.5"]))
def test_every_upstream_error_maps_to_an_openai_error(status: int, body: bytes, retry: str) -> None:
    error = mapped_error(status, body, httpx.Headers({"Retry-After": retry} if retry else {}), "m")
    assert error.upstream_status == status
    assert isinstance(error.message, str) and error.message
    assert isinstance(error.code, str) and isinstance(error.type, str)
    if status in (401, 403, 407):
        assert error.status == 502  # llmux's credentials, not the client's
    elif status == 408:
        assert error.status == 504
    elif status < 500:
        assert error.status == status  # the client's fault: relayed as is
    else:
        assert error.status in (502, 503, 504)
    assert error.retry_after is None or error.retry_after >= 0


REGISTRY_YAML = """
physical:
  far: {type: llm, backend: openai, options: {base_url: 'http://127.0.0.1:9/v1', model: upstream-name}}
virtual:
  near-name: {physical: far, behaviour: {sampling: {temperature: 0.3, top_p: 0.9}}}
"""
fields = st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k not in ("model", "stream")), json_values,
                         max_size=6)


@functools.cache
def service() -> UpstreamService:
    directory = Path(tempfile.mkdtemp())
    (directory / "models.yaml").write_text(REGISTRY_YAML)
    return UpstreamService(load_models(directory / "models.yaml"))  # its clients are never used: route() sends nothing


@settings(deadline=None)
@given(extra=fields)
def test_fields_pass_through_unchanged(extra: dict[str, Any]) -> None:
    body = {"model": "near-name", "messages": [], **extra}
    relay = service().route(msgspec.json.encode(body), "chat", ModelType.LLM)
    assert relay is not None and relay.model == "near-name"
    sent = msgspec.json.decode(relay.body)
    assert sent.pop("model") == "upstream-name"
    defaults = {"temperature": 0.3, "top_p": 0.9}
    for name, value in defaults.items():
        assert sent.pop(name) == extra.get(name, value)  # the request's own value wins
    assert sent == {k: v for k, v in {"messages": [], **extra}.items() if k not in defaults}
