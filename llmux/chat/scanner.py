"""Find markup markers in text that arrives in arbitrary pieces.

A model's output arrives a token (or a few bytes) at a time, so a marker such as
``</think>`` may be split across pieces. ``MarkerScanner`` releases text only once it is sure
the text is not the start of a marker, and reports each marker it finds, in order.
"""

from __future__ import annotations

from collections.abc import Iterable


class MarkerScanner:
    """Splits a stream into plain text and markers from a set that may change between feeds."""

    def __init__(self) -> None:
        self._buffer = ""

    def scan(self, piece: str, markers: Iterable[str]) -> tuple[str, str | None]:
        """Add ``piece``; return ``(text, marker)``: the text before the first marker and that
        marker, or (marker None) the text that is safe to release because it cannot be the
        start of a marker.

        After a marker the caller calls ``scan("", new_markers)`` again, because which markers
        matter depends on its state (inside ``<think>`` only ``</think>`` ends it).
        """
        self._buffer += piece
        found = _first(self._buffer, markers)
        if found is not None:
            at, marker = found
            text, self._buffer = self._buffer[:at], self._buffer[at + len(marker) :]
            return text, marker
        cut = len(self._buffer) - _partial_tail(self._buffer, markers)
        text, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return text, None

    def pending(self) -> bool:
        return bool(self._buffer)

    def drain(self) -> str:
        """Everything held back (at the end of the stream a partial marker is just text)."""
        text, self._buffer = self._buffer, ""
        return text


def _first(text: str, markers: Iterable[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for marker in markers:
        at = text.find(marker)
        if at >= 0 and (best is None or at < best[0] or (at == best[0] and len(marker) > len(best[1]))):
            best = (at, marker)
    return best


def _partial_tail(text: str, markers: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some marker."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest
