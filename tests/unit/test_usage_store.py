"""The usage store (services/usage.py): what a request's record contributes, sums per day,
client and model, and a database that outlives the process that wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmux.services.usage import UsageStore, counts_of


def record(**fields: Any) -> dict[str, Any]:
    return {"client": "alice", "model": "m", "physical": "p", "route": "/v1/chat/completions", **fields}


def test_what_counts() -> None:
    assert counts_of(record(prompt_tokens=3, completion_tokens=4)) == {
        "requests": 1, "prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 0, "reasoning_tokens": 0,
    }
    assert counts_of(record(refused="tokens")) is None  # a 429 is not usage
    assert counts_of(record(client=None)) is None  # no key (a public route)
    assert counts_of({"client": "alice", "model": "no-such-model"}) is None  # never resolved
    speech = counts_of(record(route="/v1/audio/speech", chars=12, audio_s=1.5))
    assert speech is not None and (speech["characters"], speech["speech_seconds"]) == (12, 1.5)
    heard = counts_of(record(route="/v1/audio/transcriptions", chars=99, audio_s=3.0))
    assert heard is not None and heard["audio_seconds"] == 3.0 and "characters" not in heard


def test_sums_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    days = iter(["2026-11-30", "2026-11-30", "2026-12-01", "2026-12-01"])
    store = UsageStore(tmp_path / "u.sqlite3", today=lambda: next(days))
    store.request_done(record(prompt_tokens=1, completion_tokens=2))
    store.request_done(record(prompt_tokens=10, completion_tokens=20, model="n"))
    store.flush()
    store.request_done(record(prompt_tokens=100, completion_tokens=200))
    store.request_done(record(client="bob", route="/v1/audio/speech", chars=5, audio_s=0.5))
    store.close()  # writes what is pending

    again = UsageStore(tmp_path / "u.sqlite3")
    try:
        (total,) = again.query()
        assert (total["requests"], total["prompt_tokens"], total["characters"]) == (4, 111, 5)
        by_day = again.query(client="alice", group_by=["day"])
        assert [(r["day"], r["requests"]) for r in by_day] == [("2026-11-30", 2), ("2026-12-01", 1)]
        assert again.query(start="2026-12-01", end="2026-12-01", client="alice", group_by=["model"]) == [
            {"model": "m", "requests": 1, "prompt_tokens": 100, "completion_tokens": 200, "cached_tokens": 0,
             "reasoning_tokens": 0, "audio_seconds": 0.0, "speech_seconds": 0.0, "characters": 0},
        ]
        assert again.query(client="nobody") == []
    finally:
        again.close()
