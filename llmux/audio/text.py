"""Split text for speech synthesis at sentence boundaries.

TTS models degrade (or stop early) on long inputs and a streamed response wants its first
audio soon, so input is synthesised one piece at a time: whole sentences, packed up to
``max_chars``; a single sentence longer than that is cut at clause punctuation, then at spaces.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p.strip()]


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join neighbouring parts with a space while the result stays within ``max_chars``."""
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + 1 + len(part) <= max_chars:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def _shorten(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(_cut(sentence, _CLAUSE_END), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        words = clause.split()
        long_words = [w[i : i + max_chars] for w in words for i in range(0, len(w), max_chars)]
        pieces.extend(_pack(long_words, max_chars))
    return pieces


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Pieces of ``text`` in order, each at most ``max_chars`` long, none empty.

    Paragraph and line breaks always end a piece; sentences are packed together up to
    ``max_chars`` so short sentences do not each pay the per-call overhead.
    """
    pieces: list[str] = []
    for line in text.splitlines():
        sentences = [s for raw in _cut(line, _SENTENCE_END) for s in _shorten(raw, max_chars)]
        pieces.extend(_pack(sentences, max_chars))
    return pieces


_BOUNDARY = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")
_CLAUSE = re.compile(r"(?<=[,;:—–])\s+")


class SentenceStream:
    """Text that arrives in pieces (a chat model's tokens), handed out a sentence at a time as
    soon as each is complete, so speech can start while the model still writes. A sentence is
    complete at end punctuation followed by whitespace, or a line break; one that grows past
    ``max_chars`` without ending is cut at the last space. The pieces joined with spaces are the
    text, whitespace aside."""

    def __init__(self, max_chars: int = 300, first_clause_chars: int | None = None) -> None:
        self.max_chars = max_chars
        self._text = ""
        self._first_clause = first_clause_chars
        """Hand out the very first piece at a clause boundary (a comma) once it is this long:
        speech starts sooner, at the price of a pause that the sentence might not have had."""

    def add(self, piece: str) -> list[str]:
        self._text += piece
        ends = [m.end() for m in _BOUNDARY.finditer(self._text)]
        if ends:
            self._first_clause = None
            done, self._text = self._text[: ends[-1]], self._text[ends[-1] :]
            return split_sentences(done, self.max_chars)
        if self._first_clause is not None:
            clauses = [m.end() for m in _CLAUSE.finditer(self._text) if m.start() >= self._first_clause]
            if clauses:
                self._first_clause = None
                done, self._text = self._text[: clauses[0]], self._text[clauses[0] :]
                return split_sentences(done, self.max_chars)
        if len(self._text) > self.max_chars and " " in self._text.strip():
            cut = self._text.rstrip().rfind(" ")
            done, self._text = self._text[:cut], self._text[cut:]
            return split_sentences(done, self.max_chars)
        return []

    def finish(self) -> list[str]:
        done, self._text = self._text, ""
        return split_sentences(done, self.max_chars)
