"""A filter looks at one document and keeps it (True) or drops it with a reason ((False, "reason")).

`apply_filters` runs a list of filters over a table: the first filter that drops a row names the reason, as in
datatrove, so each dropped row is counted once.
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from pipeline.documents import Document, exclusions

FilterResult = bool | tuple[bool, str]


class Filter(Protocol):
    name: str  # prefix of every reason this filter gives: "{name}:{reason}"

    def filter(self, doc: Document) -> FilterResult: ...


def apply_filters(df: pl.DataFrame, filters: list[Filter], stage: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Returns (kept rows, exclusion rows). `df` needs `text`, `id` and `url` columns."""
    keep: list[bool] = []
    texts: list[str] = []  # a filter may rewrite doc.text (C4 removes lines); the kept row carries the new text
    dropped: list[dict] = []
    for row in df.iter_rows(named=True):
        doc = Document(text=row["text"], id=row["id"], metadata=row)
        reason = first_drop_reason(doc, filters)
        keep.append(reason is None)
        texts.append(doc.text)
        if reason is not None:
            dropped.append({"id": row["id"], "url": row.get("url"), "reason": reason})
    mask = pl.Series("keep", keep, dtype=pl.Boolean)
    kept = df.with_columns(pl.Series("text", texts, dtype=pl.String)).filter(mask)
    return kept, exclusions(dropped, stage)


def first_drop_reason(doc: Document, filters: list[Filter]) -> str | None:
    for f in filters:
        result = f.filter(doc)
        if result is True:
            continue
        if result is False:
            return f.name
        ok, reason = result
        if not ok:
            return f"{f.name}:{reason}"
    return None
