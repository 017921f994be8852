"""Decode an uploaded file of any supported container to 16 kHz mono float32.

The container is recognised by its content, never by the file name: PyAV is handed a byte
buffer with no name, so ffmpeg's probe sniffs the format (Open WebUI uploads webm/opus labelled
``recording.wav``).
"""

from __future__ import annotations

import io

import av
import numpy as np

from llmux.protocol.errors import InvalidRequest

ASR_RATE = 16_000


def _undecodable(reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"The uploaded file could not be decoded as audio ({reason}). "
        "Send flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm.",
        param="file",
        code="invalid_audio",
    )


def decode_audio(data: bytes, rate: int = ASR_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Every audio sample in ``data`` as mono float32 at ``rate`` Hz.

    Raises ``InvalidRequest`` (400) for an empty file, bytes no demuxer recognises, a file
    without an audio stream, or one whose audio decodes to nothing; and, *while decoding*, for
    one longer than ``max_seconds`` (compressed silence is tiny: 641 KB of FLAC is an hour, 220
    MB of float32 — the bound stops a decode bomb before it is in memory).
    """
    if not data:
        raise InvalidRequest("The uploaded audio file is empty.", param="file", code="empty_file")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise _undecodable("it has no audio stream")
            limit = None if max_seconds is None else int(max_seconds * rate)
            samples = _decode_stream(container, stream, rate, limit)  # type: ignore[arg-type]  # type == "audio" above
    except av.FFmpegError as exc:
        raise _undecodable(type(exc).__name__) from None
    if samples.size == 0:
        raise _undecodable("it contains no audio samples")
    return samples


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, rate: int, limit: int | None
) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[np.ndarray] = []
    total = 0
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray().reshape(-1))
            total += parts[-1].size
        if limit is not None and total > limit:
            raise InvalidRequest(
                f"The audio is longer than this server transcribes ({limit / rate:g} s, limits.max_audio_s).",
                param="file",
                code="audio_too_long",
            )
    parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    if not parts:
        return np.zeros(0, np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
