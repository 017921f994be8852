"""Change speaking speed without changing pitch (ffmpeg's ``atempo`` filter through PyAV).

Used for the ``speed`` of a speech request when the model cannot pace itself (Chatterbox), or
for the part of the range it cannot reach (hibari paces itself between 0.5 and 2.0).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def change_tempo(pcm: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """``pcm`` played ``factor`` times as fast (2.0 halves the duration), same pitch."""
    if abs(factor - 1.0) < 1e-3 or pcm.size == 0:
        return pcm
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
    tempo = graph.add("atempo", f"{factor:.4f}")
    sink = graph.add("abuffersink")
    source.link_to(tempo)
    tempo.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.asarray(pcm, np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    graph.push(frame)
    graph.push(None)
    parts: list[np.ndarray] = []
    while True:
        try:
            parts.append(graph.pull().to_ndarray().reshape(-1))
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
