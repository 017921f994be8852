"""Wire shapes of the operations API under ``/v1/admin`` (besides the residency list)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

REQUIRED_SPEEDUP = 5.0  # LLMUX-TST-020/021


class SpeedTestRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str
    """A physical model id, or a virtual name (its physical model is tested)."""
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 128
    """Chat: tokens to generate on each device."""
    audio_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    """ASR: seconds of audio to transcribe on each device."""


class DeviceRun(msgspec.Struct, kw_only=True):
    device: Literal["gpu", "cpu"]
    seconds: float
    work: float
    unit: str
    rate: float


class SpeedTestReport(msgspec.Struct, kw_only=True):
    model: str
    backend: str
    type: str
    gpu: DeviceRun
    cpu: DeviceRun
    speedup: float
    """GPU rate / CPU rate."""
    required: float = REQUIRED_SPEEDUP
    passed: bool
