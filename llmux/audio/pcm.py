"""Raw pcm16 (the Realtime API's audio) to and from float32, and streaming resampling.

The realtime voice session receives 24 kHz pcm16 in small pieces and hands 16 kHz float32 to
voice activity detection and speech recognition; answers leave at 24 kHz pcm16 whatever rate
the speech model synthesises at. PyAV's resampler (ffmpeg's swresample) keeps its filter state
between pieces, so resampling piece by piece sounds like resampling the whole.
"""

from __future__ import annotations

import av
import numpy as np

from llmux.protocol.errors import InvalidRequest


def pcm16_to_float(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise InvalidRequest("pcm16 audio has an odd number of bytes.", param="audio", code="invalid_audio")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


class Resampler:
    """Mono float32 from ``source`` Hz to ``target`` Hz, one piece at a time."""

    def __init__(self, source: int, target: int) -> None:
        self.source, self.target = source, target
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=target) if source != target else None
        self._pts = 0

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if self._resampler is None or audio.size == 0:
            return audio.astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.source
        frame.pts = self._pts
        self._pts += audio.size
        return self._join(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the filter still holds (the end of the stream)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._join(self._resampler.resample(None))

    @staticmethod
    def _join(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
