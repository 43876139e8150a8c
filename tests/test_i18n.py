"""One catalogue, two languages: every key complete, every template key known."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pdn_ops.core.i18n import catalogue, negotiate, translate

PKG = Path(__file__).resolve().parent.parent / "pdn_ops"


def test_every_message_has_indonesian_and_english() -> None:
    for key, entry in catalogue().items():
        assert set(entry) == {"id", "en"}, key
        assert entry["id"].strip() and entry["en"].strip(), key
        assert re.findall(r"{(\w+)}", entry["id"]) == re.findall(r"{(\w+)}", entry["en"]) or sorted(
            re.findall(r"{(\w+)}", entry["id"])
        ) == sorted(re.findall(r"{(\w+)}", entry["en"])), f"{key}: placeholders differ"


def test_templates_use_only_catalogue_keys() -> None:
    keys = set(catalogue())
    used: set[str] = set()
    for template in PKG.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*['"]([\w.]+)['"]""", template.read_text()))
    assert used, "templates should take their text from the catalogue"
    # t('complaints.state.' + k) builds a key from a prefix: at least one key must carry that prefix.
    prefixes = {u for u in used if u.endswith(".")}
    assert not [p for p in prefixes if not any(k.startswith(p) for k in keys)], "unknown key prefixes"
    assert used - prefixes <= keys, sorted(used - prefixes - keys)


def test_translate_and_negotiate() -> None:
    assert translate("home.counts", "en", opds=1, vms=2, sites=3) == "1 OPDs, 2 VMs, 3 sites in the inventory."
    assert translate("home.title", "fr") == "Selamat datang"
    with pytest.raises(KeyError):
        translate("no.such.key")
    assert negotiate(None) == "id"
    assert negotiate("en-GB,en;q=0.9,id;q=0.8") == "en"
    assert negotiate("id,en;q=0.5") == "id"
    assert negotiate("fr, de;q=0.5") == "id"


def test_a_key_defined_in_two_files_names_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdn_ops.core import i18n

    (tmp_path / "a.yaml").write_text('x.key:\n  id: "satu"\n  en: "one"\n', encoding="utf-8")
    (tmp_path / "b.yaml").write_text('x.key:\n  id: "dua"\n  en: "two"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "CATALOGUE_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"'x.key' is defined in both a.yaml and b.yaml"):
        i18n._load()


def test_a_burst_of_first_requests_parses_the_catalogue_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from pdn_ops.core import i18n

    parsed: list[Path] = []
    real_parse = i18n._parse

    def counting(path: Path) -> object:
        parsed.append(path)
        return real_parse(path)

    monkeypatch.setattr(i18n, "_parse", counting)
    monkeypatch.setattr(i18n, "_merged", None)
    start = threading.Barrier(16)
    results: list[int] = []

    def first_request() -> None:
        start.wait()
        results.append(id(i18n.catalogue()))

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    files = sorted(i18n.CATALOGUE_DIR.glob("*.yaml"))
    assert sorted(parsed) == files, "each file parsed exactly once"
    assert len(set(results)) == 1 and len(results) == 16
