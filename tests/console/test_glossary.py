"""One word per concept in Indonesian: the glossary (pdn_ops/core/i18n/glossary.yaml) holds for the whole catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pdn_ops.complaints.model import State
from pdn_ops.core.i18n import catalogue, translate

GLOSSARY = yaml.safe_load((Path(__file__).resolve().parents[2] / "pdn_ops/core/i18n/glossary.yaml").read_text())


def test_no_indonesian_text_uses_a_word_the_glossary_avoids() -> None:
    found = []
    for key, entry in catalogue().items():
        text = '"' + re.sub(r"\{[^}]*\}", "", entry["id"]) + '"'
        for concept, rule in GLOSSARY.items():
            if concept == "states":
                continue
            found += [f"{key}: {word!r} ({concept} is {rule['use']!r})" for word in rule["avoid"]
                      if word in text]
    assert not found, "\n".join(found)


def test_each_state_is_named_as_the_glossary_says_on_pages_and_in_notifications() -> None:
    states = GLOSSARY["states"]
    assert set(states) == {str(s) for s in State}
    for state, word in states.items():
        assert translate(f"complaints.state.{state}", "id") == word


def test_every_concept_is_used_somewhere() -> None:
    texts = " ".join(entry["id"].lower() for entry in catalogue().values())
    for concept, rule in GLOSSARY.items():
        if concept != "states":
            assert rule["use"].lower() in texts, concept
