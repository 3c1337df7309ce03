"""The document and the table schemas every stage reads and writes.

Rows travel between stages as parquet (polars). A filter sees one `Document` at a time, the way datatrove's
steps do; `Document.metadata` carries the row's other columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl


@dataclass(slots=True)
class Document:
    text: str
    id: str
    metadata: dict = field(default_factory=dict)


# warc_records and url_filtered: one row per HTML response record.
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,  # WARC-Record-ID
    "url": pl.String,
    "date": pl.String,  # WARC-Date, ISO 8601
    "file_path": pl.String,  # the WARC file the record came from
    "offset": pl.Int64,  # byte offset of the record in that file (of its gzip member when gzipped)
    "content_type": pl.String,
    "charset": pl.String,  # declared in the HTTP header or the page's <meta>; null if none
    "html": pl.Binary,  # the HTTP body, undecoded
}

# extracted_text onwards: the FineWeb document schema, filled in as stages run.
DOC_SCHEMA: dict[str, pl.DataType] = {
    "text": pl.String,
    "id": pl.String,
    "dump": pl.String,  # the crawl name
    "url": pl.String,
    "date": pl.String,
    "file_path": pl.String,
    "language": pl.String,
    "language_score": pl.Float64,
}

# clean_documents: the FineWeb schema whole; token_count is filled by tokenization.
CLEAN_SCHEMA: dict[str, pl.DataType] = {**DOC_SCHEMA, "token_count": pl.Int64}

# What every stage writes for what it dropped (datatrove's exclusion writer).
EXCLUSION_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,
    "url": pl.String,
    "stage": pl.String,
    "reason": pl.String,  # a short, countable name: "gopher_rep:dup_line_frac", "not_html", ...
    "detail": pl.String,  # free text for a person: the measured value, the file and offset, ...
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def exclusions(rows: list[dict], stage: str) -> pl.DataFrame:
    """Builds an exclusion table from dicts with id, url, reason and optional detail."""
    return pl.DataFrame(
        [
            {"id": r.get("id"), "url": r.get("url"), "stage": stage, "reason": r["reason"], "detail": r.get("detail")}
            for r in rows
        ],
        schema=EXCLUSION_SCHEMA,
    )


def iter_clean(store, crawls: dict[str, list[str]], columns: Sequence[str] = ("id", "text")) -> Iterator[tuple]:
    """Rows (as tuples of `columns`) of every committed clean_documents part of `crawls` ({crawl: [shard, ...]}),
    crawl by crawl, shard by shard, part by part: a fixed order. PartitionMissing names the first one not there."""
    for crawl, shards in crawls.items():
        for shard in shards:
            for part in store.parts("clean_documents", crawl, shard):
                yield from store.read_part("clean_documents", crawl, shard, part).select(columns).iter_rows()
