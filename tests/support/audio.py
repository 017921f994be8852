"""Audio fixtures made with PyAV: tones in any container and codec, from bytes to bytes."""

from __future__ import annotations

import io

import av
import numpy as np

CASES = [
    # (label, container, codec) — every format LLMUX-API-004 names, in its usual codecs
    ("flac", "flac", "flac"),
    ("mp3", "mp3", "libmp3lame"),
    ("mp4-aac", "mp4", "aac"),
    ("m4a-aac", "ipod", "aac"),
    ("m4a-alac", "ipod", "alac"),
    ("mpeg-mp2", "mpeg", "mp2"),
    ("mpga-mp3", "mp3", "mp3"),
    ("ogg-vorbis", "ogg", "vorbis"),
    ("ogg-opus", "ogg", "libopus"),
    ("ogg-flac", "ogg", "flac"),
    ("wav-s16", "wav", "pcm_s16le"),
    ("wav-f32", "wav", "pcm_f32le"),
    ("wav-ulaw", "wav", "pcm_mulaw"),
    ("webm-opus", "webm", "libopus"),
    ("webm-vorbis", "webm", "vorbis"),
]

RATES = {"libopus": 48_000, "pcm_mulaw": 8_000, "mp2": 44_100}


def tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def encode(pcm: np.ndarray, rate: int, container: str, codec: str, channels: int = 1) -> bytes:
    """``pcm`` (mono) in ``container``/``codec``; stereo duplicates the channel."""
    out = io.BytesIO()
    if codec == "vorbis":  # ffmpeg's own vorbis encoder writes stereo only
        channels = 2
    layout = "stereo" if channels == 2 else "mono"
    with av.open(out, mode="w", format=container) as box:
        stream = box.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":  # ffmpeg's native vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        data = np.tile(pcm, (channels, 1)) if channels == 2 else pcm.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[int(np.argmax(spectrum))])
