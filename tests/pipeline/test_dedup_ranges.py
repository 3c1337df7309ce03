"""Clustering split by ranges of band hash values: sorted band tables read by byte range, spans under a memory
budget, and the ranges' pairs joined into exactly the clusters of clustering the whole crawl at once."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from pipeline import dedup_io
from pipeline.dedup import BUCKETS, bucket_of, bucket_range, cluster, join_pairs, split_buckets
from pipeline.minhash import MinHashConfig
from pipeline.storage import PartitionMissing, Store

CONFIG = MinHashConfig(bands=6, rows=2)


def planted_bands(n_shards: int, docs: int, seed: int) -> list[np.ndarray]:
    """(docs, bands) band hashes a shard: random, but a fifth of the documents copy some bands of a document of any
    shard, and a few share a band hash with dozens of others (long chains across shards and bands)."""
    rng = np.random.default_rng(seed)
    shards = [rng.integers(0, 2**64, (docs, CONFIG.bands), dtype=np.uint64, endpoint=False) for _ in range(n_shards)]
    for s, table in enumerate(shards):
        for row in rng.choice(docs, docs // 5, replace=False):
            other = shards[rng.integers(n_shards)][rng.integers(docs)]
            shared = rng.random(CONFIG.bands) < 0.4
            table[row, shared] = other[shared]
        table[rng.choice(docs, 30, replace=False), 2] = np.uint64(12345)  # one big bucket
    return shards


def store_with(tmp_path, shards: list[np.ndarray]) -> Store:
    store = Store(str(tmp_path))
    for s, hashes in enumerate(shards):
        directory = dedup_io.signature_dir(f"{s:05d}", CONFIG)
        keys = (np.int64(s) << 32) + np.arange(len(hashes), dtype=np.int64)
        digest = dedup_io.write_band_tables(store, "c", directory, hashes, keys)
        store.commit(dedup_io.SIGNATURES, "c", directory, [], {"bands_sha256": digest,
                     "stats": {"documents": len(hashes)}}, files=dedup_io.BAND_FILES)
    return store


def whole_crawl_clusters(shards: list[np.ndarray]) -> pl.DataFrame:
    keys = np.concatenate([(np.int64(s) << 32) + np.arange(len(h), dtype=np.int64) for s, h in enumerate(shards)])
    hashes = np.concatenate(shards)
    return cluster(lambda b: pl.DataFrame({"band_hash": hashes[:, b], "doc_key": keys}), CONFIG.bands)


def test_a_range_of_a_shard_is_its_rows_in_those_buckets_sorted(tmp_path):
    shards = planted_bands(1, 2000, seed=1)
    store = store_with(tmp_path, shards)
    first, end = bucket_range(5, 16)
    bands = dedup_io.ShardBands.load(store, "c", dedup_io.signature_dir("00000", CONFIG), first, end)
    hashes, keys = bands.read(store, "c", 3, first, end)
    inside = (bucket_of(shards[0][:, 3]) >= first) & (bucket_of(shards[0][:, 3]) < end)
    assert 60 < len(hashes) < 200 and len(hashes) == inside.sum()
    assert np.all(np.diff(hashes.astype(np.float64)) >= 0)
    assert np.array_equal(shards[0][keys, 3], hashes)  # each hash with its own document's key
    assert set(keys) == set(np.flatnonzero(inside))


def test_split_buckets_keeps_every_band_under_the_budget():
    rows = np.array([[5, 5, 5, 5, 50, 1], [1, 9, 1, 1, 1, 1]])
    assert split_buckets(rows, 10, 16, max_rows=10) == [(10, 12), (12, 14), (14, 15), (15, 16)]  # 50: alone
    assert split_buckets(rows, 10, 16, max_rows=1000) == [(10, 16)]
    assert split_buckets(np.zeros((2, 0), dtype=np.int64), 3, 3, 10) == []


@pytest.mark.parametrize("memory_mb", [1024, 0.02])  # one span a range; or ~330 rows a span, so ranges split
def test_ranges_joined_give_the_clusters_of_the_whole_crawl(tmp_path, memory_mb):
    shards = planted_bands(4, 3000, seed=2)
    store = store_with(tmp_path, shards)
    names = [f"{s:05d}" for s in range(len(shards))]
    stats = [dedup_io.compute_pairs(store, "c", names, CONFIG, key, memory_mb) for key in dedup_io.range_keys()]
    assert sum(s["rows"] for s in stats) == 4 * 3000 * CONFIG.bands  # every row read once
    if memory_mb < 1:
        assert min(s["spans"] for s in stats) > 1
        assert max(s["largest_span_rows"] for s in stats) <= memory_mb * 2**20 // dedup_io.BYTES_PER_ROW
        # each span's pairs are written before the next span is read: a part a span, not the range's in memory
        assert any(len(store.parts(dedup_io.PAIRS, "c", key)) > 1 for key in dedup_io.range_keys())
    pairs = [store.read(dedup_io.PAIRS, "c", key) for key in dedup_io.range_keys()]
    joined, expected = join_pairs(pairs.__getitem__, len(pairs)), whole_crawl_clusters(shards)
    assert joined.equals(expected)
    assert expected.height > 2000 and expected["cluster"].n_unique() > 300
    assert expected.group_by("cluster").len()["len"].max() > 30  # a chain spans shards, bands and ranges


def test_ranges_with_no_rows_or_no_collisions_give_empty_pairs(tmp_path):
    empty = pl.DataFrame(schema={"doc_key": pl.Int64, "cluster": pl.Int64})
    assert join_pairs(lambda i: empty, 3).equals(empty) and join_pairs(lambda i: empty, 0).equals(empty)
    shards = [np.zeros((0, CONFIG.bands), dtype=np.uint64), planted_bands(1, 40, seed=5)[0]]  # an empty shard
    store = store_with(tmp_path, shards)
    stats = [dedup_io.compute_pairs(store, "c", ["00000", "00001"], CONFIG, key, 64) for key in dedup_io.range_keys()]
    assert sum(s["rows"] for s in stats) == 40 * CONFIG.bands
    for key in dedup_io.range_keys():
        pairs = store.read(dedup_io.PAIRS, "c", key)
        assert pairs.schema == dict(dedup_io.PAIR_SCHEMA)


def test_clusters_refuse_pairs_made_from_other_signatures(tmp_path):
    shards = planted_bands(2, 500, seed=3)
    store = store_with(tmp_path, shards)
    for key in dedup_io.range_keys():
        dedup_io.compute_pairs(store, "c", ["00000", "00001"], CONFIG, key, 64)
    store = store_with(tmp_path, planted_bands(2, 500, seed=4))  # the shards were signed again, differently
    with pytest.raises(PartitionMissing, match="range='0' was made from other signatures"):
        dedup_io.compute_clusters(store, "c", ["00000", "00001"], CONFIG, 64)


def test_bucket_range_covers_every_bucket_once():
    spans = [bucket_range(i, 16) for i in range(16)]
    assert spans[0][0] == 0 and spans[-1][1] == BUCKETS
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="dividing"):
        bucket_range(0, 3)


def test_a_bad_number_of_ranges_fails_at_load_naming_the_variable():
    assert dedup_io.N_RANGES == int(os.environ["CRAWL2CHAT_DEDUP_RANGES"]) == len(dedup_io.range_keys())
    for bad in ("3", "0", "many", "8192"):
        env = {**os.environ, "CRAWL2CHAT_DEDUP_RANGES": bad}
        out = subprocess.run([sys.executable, "-c", "import pipeline.dedup_io"], env=env, capture_output=True,
                             text=True)
        assert out.returncode != 0 and f"CRAWL2CHAT_DEDUP_RANGES must be a power of two from 1 to 4096, got {bad!r}" \
            in out.stderr
    with pytest.raises(ValueError, match="not one of the"):
        dedup_io.range_buckets("zz")
