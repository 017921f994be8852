"""Sentence splitting for TTS and the subtitle formats."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmux.audio.subtitles import to_srt, to_vtt
from llmux.audio.text import split_sentences
from llmux.engines.base import Segment


def test_sentences_are_packed_and_paragraphs_kept_apart() -> None:
    text = "Hello there. How are you? Fine!\n\nA new paragraph."
    assert split_sentences(text, max_chars=40) == ["Hello there. How are you? Fine!", "A new paragraph."]
    assert split_sentences(text, max_chars=16) == ["Hello there.", "How are you?", "Fine!", "A new paragraph."]


def test_a_long_sentence_is_cut_at_clauses_then_words() -> None:
    sentence = "one, two, three, " * 20 + "end."
    pieces = split_sentences(sentence, max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert split_sentences("x" * 120, max_chars=50) == ["x" * 50, "x" * 50, "x" * 20]


def test_blank_input_gives_nothing() -> None:
    assert split_sentences("  \n\n ") == []


@given(st.text(alphabet=st.sampled_from("ab .,!?\n"), max_size=400), st.integers(5, 80))
def test_splitting_keeps_every_word_in_order_within_the_limit(text: str, limit: int) -> None:
    pieces = split_sentences(text, max_chars=limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


def test_srt_and_vtt() -> None:
    segments = [Segment(start=0.0, end=1.5, text=" Hello."), Segment(start=61.25, end=3723.004, text="World.")]
    assert to_srt(segments) == "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n00:01:01,250 --> 01:02:03,004\nWorld.\n"
    assert to_vtt(segments).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n\n00:01:01.250 --> ")
