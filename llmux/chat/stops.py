"""OpenAI ``stop`` sequences over streamed text: text up to the first stop string is released,
the stop string itself and everything after it never are."""

from __future__ import annotations

from llmux.chat.scanner import MarkerScanner


class StopScanner:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._scanner = MarkerScanner()
        self.hit = False

    def feed(self, text: str) -> str:
        if not self._stops:
            return text
        plain, marker = self._scanner.scan(text, self._stops)
        self.hit = marker is not None
        return plain

    def drain(self) -> str:
        return "" if self.hit else self._scanner.drain()
