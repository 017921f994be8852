"""Encode float32 mono audio as the formats of OpenAI's speech endpoint.

``AudioEncoder`` takes audio in pieces (one per sentence) and hands back the bytes that are
ready after each piece, so a streamed response can send audio while later sentences are still
being synthesised. ``encode_audio`` is the one-shot form.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

OUTPUT_RATE = 24_000
"""Every format leaves at 24 kHz: OpenAI documents ``pcm`` as 24 kHz s16le, and both TTS
runtimes synthesise at 24 kHz, so nothing is resampled in the common case."""


@dataclass(frozen=True, slots=True)
class Format:
    container: str | None
    codec: str
    media_type: str
    bit_rate: int | None = None


FORMATS: dict[str, Format] = {
    "mp3": Format("mp3", "libmp3lame", "audio/mpeg", 64_000),
    "opus": Format("ogg", "libopus", "audio/ogg", 32_000),
    "aac": Format("adts", "aac", "audio/aac", 64_000),
    "flac": Format("flac", "flac", "audio/flac"),
    "wav": Format("wav", "pcm_s16le", "audio/wav"),
    "pcm": Format(None, "pcm_s16le", "audio/pcm"),
}


class _Sink:
    """A write-only file for the muxer; ``take`` returns what was written since the last call.

    It has no ``seek``, so muxers write streamable output (a WAV header with open sizes
    instead of patching it at the end)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


def _s16(pcm: np.ndarray) -> bytes:
    return bytes((np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def resample(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 at ``target`` Hz (PyAV's swresample)."""
    if rate == target or pcm.size == 0:
        return np.asarray(pcm, dtype=np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(np.asarray(pcm, np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    parts = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class AudioEncoder:
    """Incremental encoder: ``add`` pieces of audio, then ``finish``; both return bytes."""

    def __init__(self, fmt: str, input_rate: int, *, seekable: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}")
        self.format = FORMATS[fmt]
        self.input_rate = input_rate
        self.samples = 0
        self._pts = 0
        self._file: io.BytesIO | _Sink = io.BytesIO() if seekable else _Sink()
        self._container: av.container.OutputContainer | None = None
        if self.format.container is not None:
            self._container = av.open(self._file, mode="w", format=self.format.container)
            self._stream: av.AudioStream = self._container.add_stream(
                self.format.codec, rate=OUTPUT_RATE, layout="mono"
            )  # type: ignore[assignment]  # an audio codec gives an AudioStream
            if self.format.bit_rate:
                self._stream.bit_rate = self.format.bit_rate

    @property
    def media_type(self) -> str:
        return self.format.media_type

    def add(self, pcm: np.ndarray) -> bytes:
        pcm = resample(pcm, self.input_rate, OUTPUT_RATE)
        self.samples += pcm.size
        if self._container is None:
            return _s16(pcm)
        if pcm.size:
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = OUTPUT_RATE
            frame.pts = self._pts
            self._pts += pcm.size
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._drain()

    def finish(self) -> bytes:
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._drain(final=True)

    def _drain(self, final: bool = False) -> bytes:
        if isinstance(self._file, _Sink):
            return self._file.take()
        return self._file.getvalue() if final else b""

    @property
    def duration_s(self) -> float:
        return self.samples / OUTPUT_RATE


def encode_audio(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    """The whole clip in one container, headers complete (seekable output)."""
    encoder = AudioEncoder(fmt, rate, seekable=True)
    head = encoder.add(pcm)
    return head + encoder.finish()
