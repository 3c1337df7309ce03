"""Where MinHash deduplication meets storage: band-sharded signatures per shard, clusters per crawl.

Signatures are keyed by their config (`minhash_signatures/{crawl}/{shard}/{config key}/`), so signatures from an
earlier config are never mixed into a clustering run with another. Within a crawl a document is `doc_key =
shard_index << 32 | row`, an int64, so the per-crawl step holds 8-16 bytes a document, never its text or id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator

import numpy as np
import polars as pl

from pipeline.dedup import choose_survivors, cluster, estimate_jaccard, size_histogram
from pipeline.minhash import MinHashConfig, MinHasher, band_hashes
from pipeline.storage import Store

SIGNATURES = "minhash_signatures"
CLUSTERS = "duplicate_clusters"
CRAWL_SHARD = "all"  # the one "shard" of a per-crawl asset's storage
CLUSTER_SCHEMA = {
    "doc_key": pl.Int64,
    "id": pl.String,
    "cluster": pl.Int64,
    "survivor_id": pl.String,
    "is_survivor": pl.Boolean,
}


def signature_dir(shard: str, config: MinHashConfig) -> str:
    return f"{shard}/{config.key()}"


def write_signatures(
    store: Store, crawl: str, shard: str, docs: Iterator[pl.DataFrame], config: MinHashConfig
) -> dict:
    """Signs every document of a shard; writes one part per band (band_hash, doc_key) and a `docs` part."""
    hasher = MinHasher(config)
    shard_index = int(shard)
    bands: list[list[np.ndarray]] = [[] for _ in range(config.bands)]
    keys: list[np.ndarray] = []
    meta: list[pl.DataFrame] = []
    signatures: list[np.ndarray] = []
    row = 0
    for df in docs:
        if df.height == 0:
            continue
        sigs = hasher.signatures(df["text"].to_list())
        hashes = band_hashes(sigs, config)
        doc_keys = (np.int64(shard_index) << 32) + np.arange(row, row + df.height, dtype=np.int64)
        row += df.height
        keys.append(doc_keys)
        signatures.append(sigs)
        for b in range(config.bands):
            bands[b].append(hashes[:, b])
        meta.append(df.select("id", "date", "url"))
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    directory = signature_dir(shard, config)
    parts = []
    for b in range(config.bands):
        values = np.concatenate(bands[b]) if bands[b] else np.zeros(0, dtype=np.uint64)
        table = pl.DataFrame({"band_hash": pl.Series(values, dtype=pl.UInt64), "doc_key": pl.Series(all_keys, dtype=pl.Int64)})
        store.write_part(SIGNATURES, crawl, directory, f"band-{b:02d}", table)
        parts.append(f"band-{b:02d}")
    docs_table = (pl.concat(meta) if meta else pl.DataFrame(schema={"id": pl.String, "date": pl.String, "url": pl.String}))
    sig_values = np.concatenate(signatures) if signatures else np.zeros((0, config.bands * config.rows), dtype=np.uint64)
    docs_table = docs_table.with_columns(
        pl.Series("doc_key", all_keys, dtype=pl.Int64),
        pl.Series("signature", sig_values.tolist(), dtype=pl.List(pl.UInt64)),
    )
    store.write_part(SIGNATURES, crawl, directory, "docs", docs_table)
    info = {"config": config.as_dict(), "config_hash": config.key(), "stats": {"documents": int(row)}}
    store.commit(SIGNATURES, crawl, directory, [*parts, "docs"], info)
    return {"documents": int(row), "config_key": config.key()}


def signatures_fingerprint(store: Store, crawl: str, shards: list[str], config: MinHashConfig) -> str:
    """A hash of the committed signature manifests of every shard: changes when any shard's input changes.

    Raises PartitionMissing naming the first shard with no signatures for this config.
    """
    digest = hashlib.sha256(config.key().encode())
    for shard in shards:
        manifest = store.manifest(SIGNATURES, crawl, signature_dir(shard, config))
        digest.update(f"{shard}:{json.dumps(manifest, sort_keys=True)}".encode())
    return digest.hexdigest()[:16]


def compute_clusters(store: Store, crawl: str, shards: list[str], config: MinHashConfig) -> dict:
    """Clusters a whole crawl one band at a time and writes the members of every cluster with its survivor."""
    fingerprint = signatures_fingerprint(store, crawl, shards, config)

    def band_table(b: int) -> pl.DataFrame:
        return pl.concat(
            [store.read_part(SIGNATURES, crawl, signature_dir(s, config), f"band-{b:02d}") for s in shards]
        )

    members = cluster(band_table, config.bands)  # doc_key, cluster
    docs = _docs(store, crawl, shards, config, members["doc_key"])
    table = choose_survivors(members.join(docs.select("doc_key", "id", "date"), on="doc_key"))
    table = table.select(list(CLUSTER_SCHEMA)).cast(CLUSTER_SCHEMA).sort("doc_key")
    store.write_part(CLUSTERS, crawl, CRAWL_SHARD, "clusters", table)
    n_docs = sum(store.manifest(SIGNATURES, crawl, signature_dir(s, config))["stats"]["documents"] for s in shards)
    sizes = table.group_by("cluster").len()["len"].to_list()
    stats = {
        "documents": n_docs,
        "clusters": len(sizes),
        "documents_in_clusters": table.height,
        "removed": int((~table["is_survivor"]).sum()),
        "size_histogram": size_histogram(sizes),
        "examples": _example_pairs(table, docs),
    }
    info = {"config": config.as_dict(), "config_hash": config.key(), "inputs": fingerprint, "shards": shards, "stats": stats}
    store.commit(CLUSTERS, crawl, CRAWL_SHARD, ["clusters"], info)
    return stats


def clusters_fingerprint(store: Store, crawl: str) -> str:
    """The fingerprint of the signatures the committed clusters were computed from."""
    return store.manifest(CLUSTERS, crawl, CRAWL_SHARD)["inputs"]


def duplicates_in_shard(store: Store, crawl: str, shard: str) -> dict[str, str]:
    """id -> survivor id, for the documents of one shard that lose to another member of their cluster."""
    table = store.read_part(CLUSTERS, crawl, CRAWL_SHARD, "clusters")
    losers = table.filter(~pl.col("is_survivor") & ((pl.col("doc_key") // (1 << 32)) == int(shard)))
    return dict(zip(losers["id"], losers["survivor_id"]))


def _docs(store: Store, crawl: str, shards: list[str], config: MinHashConfig, keys: pl.Series) -> pl.DataFrame:
    """The docs parts of the shards, filtered to `keys` (cluster members only)."""
    wanted = set(keys.to_list())
    by_shard: Counter = Counter(k >> 32 for k in wanted)
    frames = []
    for shard in shards:
        if by_shard[int(shard)]:
            docs = store.read_part(SIGNATURES, crawl, signature_dir(shard, config), "docs")
            frames.append(docs.filter(pl.col("doc_key").is_in(list(wanted))))
    if not frames:
        return pl.DataFrame(schema={"id": pl.String, "date": pl.String, "url": pl.String, "doc_key": pl.Int64,
                                    "signature": pl.List(pl.UInt64)})
    return pl.concat(frames)


def _example_pairs(table: pl.DataFrame, docs: pl.DataFrame, n: int = 5) -> list[dict]:
    """A few (survivor, duplicate) pairs with their estimated Jaccard similarity, for a person to check."""
    urls = dict(zip(docs["doc_key"], docs["url"]))
    sigs = dict(zip(docs["doc_key"], docs["signature"]))
    survivor_key = dict(zip(table.filter(pl.col("is_survivor"))["cluster"], table.filter(pl.col("is_survivor"))["doc_key"]))
    pairs = []
    for row in table.filter(~pl.col("is_survivor")).head(n).iter_rows(named=True):
        keep = survivor_key[row["cluster"]]
        jaccard = estimate_jaccard(np.array(sigs[keep], dtype=np.uint64), np.array(sigs[row["doc_key"]], dtype=np.uint64))
        pairs.append({"kept": urls[keep], "dropped": urls[row["doc_key"]], "jaccard": round(float(jaccard), 3)})
    return pairs

