"""Invariants of the realtime session's pure pieces: turn boundaries from VAD scores, and the
sentence stream that feeds speech while the chat model writes."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from llmux.audio.text import SentenceStream
from llmux.audio.vad import WINDOW, SpeechDetector


def _detector(scores: list[float], silence_ms: int) -> tuple[SpeechDetector, list[float]]:
    queue = list(scores)
    return SpeechDetector(lambda _: queue.pop(0), threshold=0.5, silence_ms=silence_ms), queue


@given(
    st.lists(st.floats(0, 1), max_size=300),
    st.integers(0, 1000),
    st.lists(st.integers(1, 3 * WINDOW), min_size=1, max_size=40),
)
def test_boundaries_alternate_and_silence_ends_a_turn(scores: list[float], silence_ms: int, pieces: list[int]) -> None:
    detector, _ = _detector(scores, silence_ms)
    audio = np.zeros(len(scores) * WINDOW, np.float32)
    found = []
    at = 0
    for size in pieces * (len(audio) // max(1, sum(pieces)) + 1):
        if at >= audio.size:
            break
        found += detector.feed(audio[at : at + size])
        at += size
    kinds = [b.kind for b in found]
    assert kinds == ["start", "stop"] * (len(kinds) // 2) + (["start"] if len(kinds) % 2 else [])
    samples = [b.sample for b in found]
    assert samples == sorted(samples) and all(s % WINDOW == 0 for s in samples)
    quiet_windows = max(1, round(silence_ms * 16 / WINDOW))
    for start, stop in zip(found[::2], found[1::2], strict=False):
        speech = scores[start.sample // WINDOW]
        assert speech >= 0.5  # a turn starts on a window at the threshold
        after = scores[stop.sample // WINDOW : stop.sample // WINDOW + quiet_windows]
        assert len(after) == quiet_windows and all(p < 0.35 for p in after)  # and ends after enough quiet


def test_a_short_dip_does_not_end_the_turn() -> None:
    detector, _ = _detector([0.9] * 5 + [0.1] * 3 + [0.9] * 5 + [0.0] * 20, silence_ms=200)
    found = detector.feed(np.zeros(33 * WINDOW, np.float32))
    assert [(b.kind, b.sample // WINDOW) for b in found] == [("start", 0), ("stop", 13)]


@given(
    st.lists(st.text(alphabet="ab .!?\n,", max_size=12), max_size=40),
    st.integers(20, 300),
    st.none() | st.integers(0, 40),
)
def test_sentences_are_the_text_in_order(pieces: list[str], max_chars: int, first_clause: int | None) -> None:
    stream = SentenceStream(max_chars=max_chars, first_clause_chars=first_clause)
    out: list[str] = []
    for piece in pieces:
        out += stream.add(piece)
    out += stream.finish()
    assert "".join(out).replace(" ", "").replace("\n", "") == "".join(pieces).replace(" ", "").replace("\n", "")
    assert all(s.strip() and len(s) <= max_chars for s in out)


def test_a_sentence_is_handed_out_as_soon_as_it_ends() -> None:
    stream = SentenceStream()
    assert stream.add("Hello there") == []
    assert stream.add("! How are") == ["Hello there!"]
    assert stream.add(" you?") == []  # "?" may yet be followed by more of the sentence
    assert stream.add(" Fine.\n") == ["How are you? Fine."]  # what is complete goes together
    assert stream.finish() == []


def test_the_first_piece_may_end_at_a_comma() -> None:
    stream = SentenceStream(first_clause_chars=10)
    assert stream.add("Well, ") == []  # too short to be worth its own piece
    assert stream.add("the capital of France, ") == ["Well, the capital of France,"]
    assert stream.add("as you know, is Paris. ") == ["as you know, is Paris."]  # only the first piece
