"""Lineage you can follow by hand: a document back to its WARC record through each stage's decision.

    crawl2chat trace '<urn:uuid:...>'           its WARC file and offset, then kept or dropped at each stage

It reads only what the stages committed (the storage layout of pipeline/storage.py), local or s3://, and of each
part just the columns it needs (parquet's column projection), one shard at a time. A checkpoint's lineage is
training/lineage.py's.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter

import polars as pl

from pipeline.funnel import FUNNEL_STAGES
from pipeline.storage import PartitionMissing, Store

PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]+)>")  # what clean_documents writes in place of PII: <EMAIL_ADDRESS>, ...


def _matching(store: Store, asset: str, crawl: str, shard: str, column: str, value: str, columns: list[str],
              dropped: bool = False):
    """Each committed part's rows whose `column` is `value`, only `columns` read (none if not committed)."""
    try:
        parts = store.manifest(asset, crawl, shard, dropped)["parts"]
    except PartitionMissing:
        return
    folder = store.partition_dir(asset, crawl, shard, dropped)
    for part in parts:
        with store.fs.open(posixpath.join(folder, f"part-{part}.parquet"), "rb") as f:
            yield from pl.read_parquet(f, columns=columns).filter(pl.col(column) == value).iter_rows(named=True)


def _read(store: Store, asset: str, crawl: str, shard: str, doc_id: str, columns: list[str],
          dropped: bool = False) -> dict | None:
    """The row of `doc_id` in a committed partition, only `columns` read; None when it is not there."""
    return next(_matching(store, asset, crawl, shard, "id", doc_id, columns, dropped), None)


def find_record(store: Store, crawls: dict[str, list[str]], doc_id: str) -> tuple[str, str, dict] | None:
    """(crawl, shard, warc row without its html) of the document, searching every shard of every crawl. A record
    warc_records dropped (not HTML, too large, truncated, ...) has its url; its file and offset are not kept."""
    for crawl, shards in crawls.items():
        for shard in shards:
            row = _read(store, "warc_records", crawl, shard, doc_id, ["id", "url", "date", "file_path", "offset"])
            if row is None:
                row = _read(store, "warc_records", crawl, shard, doc_id, ["id", "url"], dropped=True)
                row = row and {**row, "date": None, "file_path": None, "offset": None}
            if row is not None:
                return crawl, shard, row
    return None


def find_ids(store: Store, crawls: dict[str, list[str]], url: str) -> list[str]:
    """The ids of the records of `url`, kept or dropped by warc_records, in every crawl."""
    return [row["id"] for crawl, shards in crawls.items() for shard in shards for dropped in (False, True)
            for row in _matching(store, "warc_records", crawl, shard, "url", url, ["id", "url"], dropped)]


def trace_document(store: Store, crawls: dict[str, list[str]], doc_id: str) -> dict:
    """{"id", "crawl", "shard", "record": {url, date, file_path, offset}, "stages": [{stage, decision, ...}]}.
    Each stage after warc_records says "kept", "dropped" (with its reason and detail; for a duplicate, the survivor's
    id), or "not reached" (dropped before). clean_documents also names the PII types it redacted, by count.
    KeyError when no crawl's warc_records holds the id."""
    found = find_record(store, crawls, doc_id)
    if found is None:
        raise KeyError(f"no document {doc_id!r} in the warc_records of crawls {sorted(crawls)} under {store.uri()}")
    crawl, shard, record = found
    stages, alive = [], True
    for stage in FUNNEL_STAGES:
        if stage == "warc_records":
            drop = _read(store, "warc_records", crawl, shard, doc_id, ["id", "reason", "detail"], dropped=True)
            stages.append({"stage": stage, "decision": "dropped", **_why(drop)} if drop else
                          {"stage": stage, "decision": "kept"})
            alive = drop is None
            continue
        if not alive:
            stages.append({"stage": stage, "decision": "not reached"})
            continue
        drop = _read(store, stage, crawl, shard, doc_id, ["id", "reason", "detail"], dropped=True)
        if drop is not None:
            entry = {"stage": stage, "decision": "dropped", **_why(drop)}
            if stage == "deduplicated":
                entry["duplicate_of"] = drop["detail"]
            stages.append(entry)
            alive = False
            continue
        kept = _read(store, stage, crawl, shard, doc_id, ["id"])
        entry = {"stage": stage, "decision": "kept" if kept else "not committed"}
        if stage == "clean_documents" and kept:
            entry["pii_redacted"] = _redacted(store, crawl, shard, doc_id)
        stages.append(entry)
        alive = kept is not None
    return {"id": doc_id, "crawl": crawl, "shard": shard, "record": record, "stages": stages}


def _why(row: dict) -> dict:
    return {"reason": row["reason"], **({"detail": row["detail"]} if row.get("detail") else {})}


def _redacted(store: Store, crawl: str, shard: str, doc_id: str) -> dict[str, int]:
    """Placeholders clean_documents put in the text: those in its text beyond the ones already in the text before."""
    after = _read(store, "clean_documents", crawl, shard, doc_id, ["id", "text"])
    before = _read(store, "deduplicated", crawl, shard, doc_id, ["id", "text"])
    counts = Counter(PLACEHOLDER.findall(after["text"])) - Counter(PLACEHOLDER.findall(before["text"] if before else ""))
    return dict(sorted(counts.items()))


def as_json(trace) -> str:
    return json.dumps(trace, indent=1, default=str)
