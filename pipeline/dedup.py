"""Near-duplicate clusters from LSH band hashes, and the one document of each cluster that is kept.

Two documents are candidates when all `rows` MinHash values of some band agree (FineWeb: 14 bands x 8 rows, so
documents of Jaccard similarity 0.8 meet in at least one band with probability ~0.92, at 0.5 with ~0.05).
Candidates are connected transitively: a cluster is a connected component over every band.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import polars as pl

def _band_edges(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(doc_key, smallest doc_key of its bucket) for every document sharing its band_hash with another one.

    A numpy argsort holds ~26 MB a million documents above the table; polars' `min().over("band_hash")` ~65 MB.
    """
    hashes = table["band_hash"].to_numpy()
    order = np.argsort(hashes)
    hashes, keys = hashes[order], table["doc_key"].to_numpy()[order]
    repeated = hashes[1:] == hashes[:-1]
    member = np.zeros(len(hashes), dtype=bool)
    member[1:] = repeated
    member[:-1] |= repeated
    hashes, keys = hashes[member], keys[member]
    if len(keys) == 0:
        return keys, keys
    starts = np.flatnonzero(np.concatenate(([True], hashes[1:] != hashes[:-1])))
    roots = np.repeat(np.minimum.reduceat(keys, starts), np.diff(np.append(starts, len(keys))))
    joined = keys != roots
    return keys[joined], roots[joined]


def _compress(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every node points at its root."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _union(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Merges the trees of every edge (u, v) of a compressed forest whose roots are their trees' smallest index.

    Each round hooks the larger root of every unjoined edge under the smaller one (the smallest wins where
    several edges hook the same root), then compresses; roots stay the smallest index of their tree.
    """
    while True:
        ru, rv = parent[u], parent[v]
        apart = ru != rv
        if not apart.any():
            return parent
        ru, rv = ru[apart], rv[apart]
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        parent = _compress(parent)


def cluster(band_table: Callable[[int], pl.DataFrame], n_bands: int) -> pl.DataFrame:
    """doc_key and cluster of every document whose band hash equals another document's in some band.

    `band_table(b)` gives band b of the whole crawl (band_hash UInt64, doc_key Int64), read one band at a time,
    so memory is one band's table plus union-find state for the documents that collided so far (none else).
    A cluster is a connected component over all bands, named by its smallest doc_key; singletons are left out.
    Sorted by doc_key.
    """
    keys = np.zeros(0, dtype=np.int64)  # sorted doc_keys seen in some collision
    parent = np.zeros(0, dtype=np.int64)  # index into keys of each one's root (its cluster's smallest key)
    for b in range(n_bands):
        doc, root = _band_edges(band_table(b))
        if len(doc) == 0:
            continue
        merged = np.union1d(keys, np.concatenate([doc, root]))
        # old roots keep their relative order in the merged keys, so roots stay the smallest of their tree
        new_parent = np.arange(len(merged), dtype=np.int64)
        new_parent[np.searchsorted(merged, keys)] = np.searchsorted(merged, keys[parent])
        keys, parent = merged, _union(new_parent, np.searchsorted(merged, doc), np.searchsorted(merged, root))
    return pl.DataFrame(
        {"doc_key": pl.Series(keys, dtype=pl.Int64), "cluster": pl.Series(keys[parent], dtype=pl.Int64)}
    )


def choose_survivors(df: pl.DataFrame) -> pl.DataFrame:
    """Picks the one kept document of each cluster: the earliest date, then the smallest id, then doc_key.

    Input: doc_key, cluster, id, date (an ISO 8601 string, null or "" when unknown, which sorts last). The
    earliest copy is most likely the original that the others were copied from. ISO strings of one format (WARC
    dates are UTC, "...Z") compare as dates do. Returns doc_key, id, cluster, survivor_id, is_survivor by doc_key.
    """
    ranked = df.with_columns(pl.when(pl.col("date") == "").then(None).otherwise(pl.col("date")).alias("_date"))
    survivors = (
        ranked.sort(["cluster", "_date", "id", "doc_key"], nulls_last=True)
        .group_by("cluster", maintain_order=True)
        .first()
        .select("cluster", pl.col("doc_key").alias("_survivor_key"), pl.col("id").alias("survivor_id"))
    )
    return (
        df.join(survivors, on="cluster", how="left")
        .with_columns((pl.col("doc_key") == pl.col("_survivor_key")).alias("is_survivor"))
        .select("doc_key", "id", "cluster", "survivor_id", "is_survivor")
        .sort("doc_key")
    )


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of two documents: the fraction of equal signature values."""
    if a.shape != b.shape:
        raise ValueError(f"signatures differ in shape: {a.shape} vs {b.shape}")
    return float(np.count_nonzero(a == b)) / a.size


def _size_bucket(size: int) -> tuple[int, str]:
    """(smallest size of the bucket, its label)."""
    if size <= 10:
        return size, str(size)
    if size <= 100:
        return 11, "11-100"
    if size <= 1000:
        return 101, "101-1000"
    return 1001, ">1000"


def size_histogram(sizes: list[int]) -> dict[str, int]:
    """Cluster size -> number of clusters, smallest first; sizes above 10 in "11-100", "101-1000", ">1000"."""
    counts = Counter(_size_bucket(size) for size in sizes)
    return {label: counts[(low, label)] for low, label in sorted(counts)}
