"""ISO 639-1 codes -> the English names OpenAI's ``verbose_json`` reports."""

from __future__ import annotations

NAMES = {
    "ar": "arabic",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "nl": "dutch",
    "pl": "polish",
    "pt": "portuguese",
    "vi": "vietnamese",
    "zh": "chinese",
}


def language_name(code: str) -> str:
    return NAMES.get(code.lower(), code)
