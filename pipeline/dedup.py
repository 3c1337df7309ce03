"""Near-duplicate clusters from LSH band hashes, and the one document of each cluster that is kept.

Two documents are candidates when all `rows` MinHash values of some band agree (FineWeb: 14 bands x 8 rows, so
documents of Jaccard similarity 0.8 meet in at least one band with probability ~0.92, at 0.5 with ~0.05).
Candidates are connected transitively: a cluster is a connected component over every band.

At the scale of a whole dump the work is split by band hash: documents that share a band hash share its value range,
so each range of hash values (`bucket_range`) is clustered on its own (`cluster` over that range's rows of every
band; a range too large for its budget in spans of buckets, each span's pairs written before the next is read),
and the spans' clusters, read as pairs (document, its span's cluster), are joined into the crawl's components on
local disk (pipeline.components). The clusters are identical to clustering the whole crawl at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

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


def _unique(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values. numpy 2.4's np.unique (so union1d) takes ~90x longer than this sort and mask
    (5.5 s against 0.06 s for 5M int64)."""
    return _distinct(np.sort(values))


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array."""
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if len(values) else values


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.searchsorted(keys, values), with the values sorted first when they are not: numpy searches sorted needles
    ~20x faster (cache), so even with the argsort it is ~6x faster on random ones (14M keys, 3M values)."""
    if len(values) < 2 or bool(np.all(values[1:] >= values[:-1])):
        return np.searchsorted(keys, values)
    order = np.argsort(values)
    out = np.empty(len(values), dtype=np.int64)
    out[order] = np.searchsorted(keys, values[order])
    return out


def _compress(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every node points at its root."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


BUCKET_BITS = 12  # band hashes are grouped by their top 12 bits: 4,096 buckets, the unit of a range
BUCKETS = 1 << BUCKET_BITS


def bucket_of(hashes: np.ndarray) -> np.ndarray:
    """The bucket (top BUCKET_BITS bits) of each uint64 band hash."""
    return (np.asarray(hashes, dtype=np.uint64) >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)


def bucket_range(index: int, n_ranges: int) -> tuple[int, int]:
    """[first, end) buckets of range `index` of `n_ranges` equal ranges of band hash values."""
    if not 0 <= index < n_ranges or BUCKETS % n_ranges:
        raise ValueError(f"range {index} of {n_ranges}: need 0 <= index < n_ranges and n_ranges dividing {BUCKETS}")
    width = BUCKETS // n_ranges
    return index * width, (index + 1) * width


def split_buckets(rows: np.ndarray, first: int, end: int, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive [first, end) bucket spans of `first..end` whose rows stay <= max_rows in every band.

    `rows[b, k]` is the number of rows of band b in bucket first + k. A bucket above max_rows on its own is a span
    by itself (4,096 buckets: at 3 billion documents a bucket holds ~730,000 rows of a band).
    """
    spans, start, total = [], first, np.zeros(rows.shape[0], dtype=np.int64)
    for k in range(end - first):
        column = rows[:, k]
        if k + first > start and (total + column).max() > max_rows:
            spans.append((start, first + k))
            start, total = first + k, np.zeros_like(total)
        total += column
    if end > start:
        spans.append((start, end))
    return spans


def cluster(band_table: Callable[[int], pl.DataFrame], n_bands: int) -> pl.DataFrame:
    """doc_key and cluster of every document whose band hash equals another document's in some band.

    `band_table(b)` gives band b of the whole crawl (band_hash UInt64, doc_key Int64), read one band at a time,
    so memory is one band's table plus union-find state for the documents that collided so far (none else).
    A cluster is a connected component over all bands, named by its smallest doc_key; singletons are left out.
    Sorted by doc_key.
    """
    return _components(_band_edges(band_table(b)) for b in range(n_bands))


def _components(edge_sets: Iterable[tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """Connected components of the edges (doc, root) of every set, folded in one set at a time: memory is the
    union-find state (the doc_keys seen in some edge, and their roots) plus one set of edges."""
    keys = np.zeros(0, dtype=np.int64)  # sorted doc_keys seen in some edge
    parent = np.zeros(0, dtype=np.int64)  # index into keys of each one's root (its cluster's smallest key)
    for doc, root in edge_sets:
        if len(doc) == 0:
            continue
        merged = _unique(np.concatenate([keys, doc, root]))
        # old roots keep their relative order in the merged keys, so roots stay the smallest of their tree
        new_parent = np.arange(len(merged), dtype=np.int64)
        new_parent[_positions(merged, keys)] = _positions(merged, keys[parent])
        keys, parent = merged, _compress(_hook(new_parent, _positions(merged, doc), _positions(merged, root)))
    return pl.DataFrame(
        {"doc_key": pl.Series(keys, dtype=pl.Int64), "cluster": pl.Series(keys[parent], dtype=pl.Int64)}
    )


def join_pairs(pair_table: Callable[[int], pl.DataFrame], n_tables: int) -> pl.DataFrame:
    """Clusters from n (doc_key, cluster) tables, each a set of pairs: union-find over the pairs, in memory. The
    reference the tests and bench/bench_cluster_scale.py hold the join on disk to (the pipeline joins the crawl's
    pairs with pipeline.components.connected_components, whose memory does not grow with the crawl).

    `pair_table(i)` is read twice, one table at a time: first to collect the documents in some pair, then to join
    its pairs. Memory is ~30 bytes a document in some pair (its key, its root, temporaries) plus one table, however
    many documents were never a candidate. Returns the same columns as `cluster`: every document of a cluster with
    its smallest doc_key, sorted by doc_key.
    """
    keys = np.zeros(0, dtype=np.int64)
    for i in range(n_tables):
        table = pair_table(i)
        found = _unique(np.concatenate([table["doc_key"].to_numpy(), table["cluster"].to_numpy()]))
        del table
        merged = np.concatenate([keys, found])
        del keys, found
        merged.sort(kind="stable")  # two sorted runs: timsort merges them in linear time, in place
        keys = _distinct(merged)
        del merged
    parent = np.arange(len(keys), dtype=np.int64)  # roots stay the smallest index, so the smallest key
    for i in range(n_tables):
        table = pair_table(i)
        doc = _positions(keys, table["doc_key"].to_numpy())
        root = _positions(keys, table["cluster"].to_numpy())
        del table
        parent = _compress(_hook(parent, doc, root))
    return pl.DataFrame(
        {"doc_key": pl.Series(keys, dtype=pl.Int64), "cluster": pl.Series(keys[parent], dtype=pl.Int64)}
    )


def _hook(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Joins the trees of every edge (u, v): each round hooks the larger root of every unjoined edge under the smaller
    one (the smallest wins where several edges hook the same root), following pointers for the edges' ends only, so
    the cost is in the edges, not in the documents. Roots stay the smallest index of their tree. Modifies and
    returns `parent`, a forest that need not be compressed (`_compress` it after)."""
    while len(u):
        ru, rv = _find(parent, u), _find(parent, v)
        apart = ru != rv
        u, v, ru, rv = u[apart], v[apart], ru[apart], rv[apart]
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
    return parent


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The root of each of x: pointers followed until they stop moving."""
    while True:
        up = parent[x]
        if np.array_equal(up, x):
            return x
        x = up


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


def size_histogram(sizes: Iterable[int] | Counter[int]) -> dict[str, int]:
    """Cluster size -> number of clusters, smallest first; sizes above 10 in "11-100", "101-1000", ">1000".

    `sizes`: each cluster's size, or a Counter of clusters by size."""
    counts: Counter[tuple[int, str]] = Counter()
    for size, n in (sizes if isinstance(sizes, Counter) else Counter(sizes)).items():
        counts[_size_bucket(size)] += n
    return {label: counts[(low, label)] for low, label in sorted(counts)}
