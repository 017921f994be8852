"""Decoding by content (every container x codec), encoding every speech format, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from llmux.audio.decode import decode_audio
from llmux.audio.encode import FORMATS, AudioEncoder, encode_audio
from llmux.engines.tempo import change_tempo
from llmux.protocol.errors import InvalidRequest
from tests.support.audio import CASES, RATES, dominant_hz, encode, tone


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize(("label", "container", "codec"), CASES, ids=[c[0] for c in CASES])
def test_every_container_and_codec_decodes_from_bytes(label: str, container: str, codec: str, channels: int) -> None:
    rate = RATES.get(codec, 22_050)
    data = encode(tone(1.5, rate), rate, container, codec, channels)
    audio = decode_audio(data)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16_000 - 1.5) < 0.06  # codec priming/padding only
    assert abs(dominant_hz(audio, 16_000) - 440) < 5
    assert 0.2 < float(np.max(np.abs(audio))) < 1.0


@pytest.mark.parametrize(
    "data",
    [b"RIFF\x00\x00\x00\x00WAVEjunk", b"not audio at all " * 64, bytes(range(256)) * 40, b"\x00" * 4096],
    ids=["truncated-wav", "text", "noise", "zeros"],
)
def test_garbage_is_a_400_that_says_so(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_audio(data)
    assert caught.value.status == 400
    assert "could not be decoded as audio" in caught.value.message
    assert caught.value.param == "file"


def test_an_empty_file_is_a_400_that_says_so() -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        decode_audio(b"")


def test_a_file_without_audio_is_a_400() -> None:
    import io

    import av

    out = io.BytesIO()
    with av.open(out, "w", format="webm") as box:  # video only
        stream = box.add_stream("libvpx", rate=10)
        stream.width = stream.height = 32
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            box.mux(packet)
    with pytest.raises(InvalidRequest, match="no audio"):
        decode_audio(out.getvalue())


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_speech_format_encodes_and_round_trips(fmt: str) -> None:
    clip = tone(2.0, 24_000)
    data = encode_audio(clip, 24_000, fmt)
    if fmt == "pcm":  # raw s16le at 24 kHz, as OpenAI documents
        assert len(data) == clip.size * 2
        back = np.frombuffer(data, "<i2").astype(np.float32) / 32767
        assert abs(dominant_hz(back, 24_000) - 440) < 5
        return
    audio = decode_audio(data)
    assert abs(audio.size / 16_000 - 2.0) < 0.1
    assert abs(dominant_hz(audio, 16_000) - 440) < 5


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_streamed_encoding_yields_bytes_early_and_decodes(fmt: str) -> None:
    encoder = AudioEncoder(fmt, 24_000)
    pieces = [encoder.add(tone(1.0, 24_000)) for _ in range(3)]
    pieces.append(encoder.finish())
    assert any(pieces[:3]), "nothing was ready before the end"
    audio = decode_audio(b"".join(pieces))
    assert abs(audio.size / 16_000 - 3.0) < 0.15


def test_input_at_another_rate_is_resampled_to_24k() -> None:
    data = encode_audio(tone(1.0, 16_000), 16_000, "pcm")
    assert len(data) == 24_000 * 2


@pytest.mark.parametrize("factor", [0.5, 1.5, 3.0])
def test_tempo_changes_duration_not_pitch(factor: float) -> None:
    out = change_tempo(tone(2.0, 24_000), 24_000, factor)
    assert abs(out.size / 24_000 - 2.0 / factor) < 0.05
    assert abs(dominant_hz(out, 24_000) - 440) < 5
