"""The one message catalogue: Bahasa Indonesia first, English second.

Templates, the API and notifications all take their user-facing text from ``catalogue.yaml`` by key. A key that
is missing, or lacks a language, is a programming error caught by the tests, not a blank on a page.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

import yaml

LANGUAGES: Final = ("id", "en")
DEFAULT_LANGUAGE: Final = "id"
CATALOGUE = Path(__file__).with_name("catalogue.yaml")


@cache
def catalogue() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{CATALOGUE}: must be a mapping of keys to {{id, en}}")
    return data


def translate(key: str, language: str = DEFAULT_LANGUAGE, /, **params: object) -> str:
    """The text for ``key`` in ``language`` (Indonesian when the language is unknown), formatted with params."""
    entry = catalogue().get(key)
    if entry is None:
        raise KeyError(f"message key {key!r} is not in the catalogue")
    text = entry.get(language) or entry[DEFAULT_LANGUAGE]
    return text.format(**params) if params else text


def negotiate(accept_language: str | None) -> str:
    """Pick id or en from an Accept-Language header; Indonesian wins ties and absence."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best
