"""Runs one stage over one (crawl, shard) partition, part by part, and keeps its statistics.

A stage is a function from an input part to (kept rows, dropped rows). Parts keep their names from stage to stage
(`00000-00000` = input file 0, batch 0), so memory stays bounded by one part and a rerun writes the same names.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import polars as pl

from pipeline.documents import EXCLUSION_SCHEMA
from pipeline.storage import Store

PREVIEW_ROWS = 5


@dataclass
class PartOutput:
    name: str
    kept: pl.DataFrame
    dropped: pl.DataFrame
    rows_in: int
    bytes_in: int
    notes: Counter = field(default_factory=Counter)  # things counted that are not drops (revisits, charsets)


@dataclass
class StageStats:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    preview: list[dict] = field(default_factory=list)

    @property
    def removed_fraction(self) -> float:
        return 1 - self.rows_out / self.rows_in if self.rows_in else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drops"], d["notes"] = dict(self.drops), dict(self.notes)
        return d


def content_bytes(df: pl.DataFrame) -> int:
    """Bytes of content a table carries: its text (UTF-8), or the raw HTML before extraction."""
    if df.height == 0:
        return 0
    if "text" in df.columns:
        return int(df["text"].str.len_bytes().sum())
    if "html" in df.columns:
        return int(df["html"].bin.size().sum())
    return 0


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_partition(
    store: Store,
    stage: str,
    crawl: str,
    shard: str,
    outputs: Iterator[PartOutput],
    config: dict,
    empty_schema: dict,
) -> StageStats:
    """Writes every part `outputs` yields, then commits the partition's kept and dropped manifests."""
    stats = StageStats(stage=stage)
    kept_parts: list[str] = []
    dropped_parts: list[str] = []
    for out in outputs:
        out.kept = conform(out.kept, empty_schema, stage)
        stats.rows_in += out.rows_in
        stats.bytes_in += out.bytes_in
        stats.rows_out += out.kept.height
        stats.bytes_out += content_bytes(out.kept)
        stats.notes.update(out.notes)
        stats.drops.update(out.dropped["reason"].to_list())
        store.write_part(stage, crawl, shard, out.name, out.kept)
        kept_parts.append(out.name)
        if out.dropped.height:
            store.write_part(stage, crawl, shard, out.name, out.dropped, dropped=True)
            dropped_parts.append(out.name)
        if len(stats.preview) < PREVIEW_ROWS:
            stats.preview += _preview(out.kept, PREVIEW_ROWS - len(stats.preview))
    if not kept_parts:  # an empty shard still commits one empty part, so readers see a schema, not a hole
        store.write_part(stage, crawl, shard, "empty", pl.DataFrame(schema=empty_schema))
        kept_parts.append("empty")
    info = {"stage": stage, "config": config, "config_hash": config_hash(config), "stats": stats.to_dict()}
    store.commit(stage, crawl, shard, dropped_parts, info, dropped=True)
    store.commit(stage, crawl, shard, kept_parts, info)
    return stats


def conform(df: pl.DataFrame, schema: dict, stage: str) -> pl.DataFrame:
    """`df` with exactly the stage's columns, in its order. An empty frame takes the schema whatever it held (an
    upstream stage's columns, none at all); a non-empty one missing a column is a bug in the stage, said by name."""
    if df.height == 0:
        return pl.DataFrame(schema=schema)
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"{stage} produced rows without its columns {missing} (it has {df.columns})")
    return df.select(list(schema)).cast(schema)


def map_parts(
    store: Store,
    upstream: str,
    crawl: str,
    shard: str,
    transform: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame, Counter]],
) -> Iterator[PartOutput]:
    """Applies `transform` (part -> kept, dropped, notes) to each committed part of `upstream`'s partition."""
    for part in store.parts(upstream, crawl, shard):
        df = store.read_part(upstream, crawl, shard, part)
        if df.height:
            kept, dropped, notes = transform(df)
        else:  # write_partition gives the empty part this stage's own schema
            kept, dropped, notes = df, pl.DataFrame(schema=EXCLUSION_SCHEMA), Counter()
        yield PartOutput(part, kept, dropped, rows_in=df.height, bytes_in=content_bytes(df), notes=notes)


def _preview(df: pl.DataFrame, n: int) -> list[dict]:
    rows = []
    for row in df.head(n).iter_rows(named=True):
        snippet = row.get("text")
        if snippet is None and row.get("html") is not None:
            snippet = row["html"][:200].decode("utf-8", "replace")
        rows.append({"url": row.get("url"), "text": (snippet or "")[:200]})
    return rows
