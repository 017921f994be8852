"""schemathesis over llmux's whole OpenAPI document (issue 10): the real app under uvicorn on a
loopback port, test engines behind it (tests/support/slow_engines.py: a chat engine that answers
at once, an instant voice). Every schema-valid or schema-invalid request gets no 5xx, an error
in OpenAI's shape, and a response that conforms to the document (status, content type, body).

Bounded (``LLMUX_FUZZ_EXAMPLES`` per operation, default 20) so it stays well under a minute.
"""

from __future__ import annotations

import os
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llmux.api.openapi import document
from llmux.app import create_app
from llmux.engines.base import SpeakOptions
from llmux.registry import ModelType, PhysicalModel, Registry
from tests.support import slow_engines as slow
from tests.support.server import serve

EXAMPLES = int(os.environ.get("LLMUX_FUZZ_EXAMPLES", "20"))
HEADERS = {"Authorization": f"Bearer {slow.KEY}"}
MODELS = ["talk", "other", "ears", "mouth"]


class QuickChat(slow.SlowChat):
    """At most 8 tokens, whatever ``max_tokens`` the fuzzer picked."""

    def generate(self, job: Any, cancel: threading.Event) -> Iterator[Any]:
        for n, piece in enumerate(super().generate(job, cancel)):
            yield piece
            if n >= 8:
                yield None  # the end of the answer
                return


class QuickMouth(slow.SlowMouth):
    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        yield np.zeros(self.sample_rate // 50, dtype=np.float32)


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    kinds = {ModelType.LLM: QuickChat, ModelType.ASR: slow.SlowEars, ModelType.TTS: QuickMouth}
    return kinds[spec.type](spec, registry)


def build(tmp: Path) -> Litestar:
    return create_app(slow.registry(tmp), slow.KEYS, factory=factory, keepalive_s=0.5)


# The document is read from the app itself (schemathesis's lazy fixture loader does not run under
# pytest 9); the requests go to the same app under uvicorn (the ``base_url`` fixture).
DOCUMENT = document(APP := build(Path(tempfile.mkdtemp(prefix="llmux-fuzz-"))), APP.openapi_schema.to_schema())
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.hook
def map_case(context: Any, case: Any) -> Any:
    """Bodies name a model that exists, so the fuzzer gets past the 404 (in every phase)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        pick = zlib.crc32(body["model"].encode("utf-8", "replace")) % len(MODELS)
        case.body = {**body, "model": MODELS[pick]}
    return case


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(APP) as url:
        yield url


def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx body is ``{"error": {"message", "type", "param", "code"}}``."""
    if response.status_code < 400:
        return None
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str), error
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_conforms_and_never_fails_on_the_server(case: Any, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers=HEADERS,
        timeout=30,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
        additional_checks=[openai_error_shape],
    )


def test_the_document_describes_every_request_body() -> None:
    raw = DOCUMENT
    bodies = {(p, m) for p, ops in raw["paths"].items() for m, op in ops.items() if "requestBody" in op}
    assert {
        ("/v1/chat/completions", "post"),
        ("/v1/responses", "post"),
        ("/v1/audio/transcriptions", "post"),
        ("/v1/audio/speech", "post"),
        ("/v1/admin/speedtest", "post"),
    } <= bodies
