"""Clusters from band tables (by hand, against a plain union-find, and against datasketch's MinHashLSH), and the
survivor of each cluster."""

from __future__ import annotations

import random

import datasketch
import numpy as np
import polars as pl
import pytest

from pipeline.dedup import choose_survivors, cluster, estimate_jaccard, size_histogram
from pipeline.minhash import MinHashConfig, MinHasher, band_hashes, shingles


def tables(bands: list[dict[int, int]]) -> list[pl.DataFrame]:
    """One (band_hash, doc_key) table per band from {doc_key: band_hash}."""
    return [
        pl.DataFrame({"band_hash": list(b.values()), "doc_key": list(b.keys())},
                     schema={"band_hash": pl.UInt64, "doc_key": pl.Int64})
        for b in bands
    ]


def clusters_of(members: pl.DataFrame) -> set[frozenset[int]]:
    return {frozenset(g["doc_key"].to_list()) for _, g in members.group_by("cluster")}


def reference_clusters(groups: list[list[int]]) -> set[frozenset[int]]:
    """Connected components of documents that share a group, with a dictionary union-find: the slow obvious way."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for group in groups:
        for other in group[1:]:
            parent[find(other)] = find(group[0])
    components: dict[int, set[int]] = {}
    for x in parent:
        components.setdefault(find(x), set()).add(x)
    return {frozenset(c) for c in components.values() if len(c) > 1}


def test_cluster_joins_transitive_chains_across_bands_and_drops_singletons():
    a, b, c, d, e, f = 50, 7, 1 << 33, 3, 40, 9  # doc_keys from two shards (shard << 32 | row)
    bands = [{a: 1, b: 1, c: 2, d: 3, e: 4, f: 5}, {a: 6, b: 7, c: 8, d: 9, e: 9, f: 10}, {a: 11, b: 12, c: 13, d: 14, e: 15, f: 16},
             {a: 17, b: 18, c: 18, d: 19, e: 20, f: 21}]
    calls = []
    band_tables = tables(bands)

    def band_table(i: int) -> pl.DataFrame:
        calls.append(i)
        return band_tables[i]

    members = cluster(band_table, len(bands))
    assert calls == [0, 1, 2, 3]  # each band read once, one at a time
    assert members.schema == {"doc_key": pl.Int64, "cluster": pl.Int64}
    assert members.rows() == [(d, d), (b, b), (e, d), (a, b), (c, b)]  # A~B (band 0), B~C (band 3): one cluster


def test_cluster_of_a_crawl_without_collisions_is_empty():
    for band in ({1: 1, 2: 2, 3: 3}, {}):
        members = cluster(lambda i: tables([band])[0], 3)
        assert members.height == 0 and members.schema == {"doc_key": pl.Int64, "cluster": pl.Int64}


def test_cluster_matches_a_plain_union_find_on_random_collisions():
    rng = random.Random(3)
    keys = rng.sample(range(1 << 40), 3000)
    n_bands, bands = 6, []
    for _ in range(n_bands):
        band = {k: rng.getrandbits(64) for k in keys}
        for g in range(300):  # groups of 2-6 documents sharing a band hash: long chains across bands
            for k in rng.sample(keys, rng.randint(2, 6)):
                band[k] = g
        bands.append(band)
    groups = []
    for band in bands:
        by_hash: dict[int, list[int]] = {}
        for k, h in band.items():
            by_hash.setdefault(h, []).append(k)
        groups += [g for g in by_hash.values() if len(g) > 1]
    band_tables = tables(bands)
    members = cluster(band_tables.__getitem__, n_bands)
    expected = reference_clusters(groups)
    assert clusters_of(members) == expected
    assert members["doc_key"].is_sorted()
    assert all(g["cluster"][0] == g["doc_key"].min() for _, g in members.group_by("cluster"))
    assert max(len(c) for c in expected) > 50  # chains merged many groups, so the test exercises hooking rounds


def words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(n)]


def edited(base: list[str], rng: random.Random, changes: int) -> str:
    text = list(base)
    for i in rng.sample(range(len(text)), changes):
        text[i] = "changed"
    return " ".join(text)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Families of 1,000-word texts: near copies (5 words changed), looser ones (30-120 changed), and strangers."""
    rng = random.Random(11)
    texts = []
    for _ in range(6):
        base = words(rng, 1000)
        texts += [" ".join(base), *(edited(base, rng, c) for c in (3, 5, 5, 30, 60, 90, 120))]
    return texts + [" ".join(words(rng, 1000)) for _ in range(10)]


def our_clusters(texts: list[str], config: MinHashConfig) -> pl.DataFrame:
    hashes = band_hashes(MinHasher(config).signatures(texts), config)
    return cluster(lambda b: pl.DataFrame({"band_hash": hashes[:, b], "doc_key": np.arange(len(texts))}), config.bands)


def test_near_duplicates_cluster_and_distinct_texts_do_not(corpus):
    members = our_clusters(corpus, MinHashConfig())
    by_doc = dict(members.iter_rows())
    for family in range(6):
        first = family * 8
        assert by_doc[first] == by_doc[first + 1] == by_doc[first + 2] == by_doc[first + 3] == first
    strangers = range(48, 58)
    assert not any(k in by_doc for k in strangers)
    assert len({by_doc[k] for k in by_doc}) == 6  # no two families merged


def test_clusters_equal_datasketch_minhash_lsh(corpus):
    config = MinHashConfig()
    lsh = datasketch.MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
    sketches = []
    for i, text in enumerate(corpus):
        m = datasketch.MinHash(num_perm=config.num_perm, seed=config.seed)
        for s in shingles(text, config.n_grams):
            m.update(s)
        lsh.insert(i, m)
        sketches.append(m)
    expected = reference_clusters([lsh.query(m) for m in sketches])
    ours = clusters_of(our_clusters(corpus, config))
    assert ours == expected
    assert any(len(c) < 8 for c in ours)  # some loose copies fall out: the comparison is not all-or-nothing


def survivors(rows: list[tuple[int, int, str, str | None]]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema={"doc_key": pl.Int64, "cluster": pl.Int64, "id": pl.String, "date": pl.String},
                      orient="row")
    return choose_survivors(df)


def test_survivor_is_the_earliest_date_with_null_dates_last():
    out = survivors([
        (1, 1, "r-b", "2024-03-01T00:00:00Z"),
        (2, 1, "r-a", None),  # smallest id, but no date
        (5, 1, "r-c", "2023-12-31T23:59:59Z"),
        (8, 1, "r-d", ""),
    ])
    assert out.columns == ["doc_key", "id", "cluster", "survivor_id", "is_survivor"]
    assert out["is_survivor"].to_list() == [False, False, True, False]
    assert set(out["survivor_id"]) == {"r-c"}


def test_survivor_ties_go_to_the_smallest_id_then_doc_key():
    out = survivors([
        (10, 3, "r-z", "2024-01-01T00:00:00Z"),
        (3, 3, "r-m", "2024-01-01T00:00:00Z"),  # same date: smallest id wins
        (4, 3, "r-y", "2024-01-01T00:00:00Z"),
        (7, 7, "r-q", None),  # all null: smallest id
        (9, 7, "r-p", None),
        (11, 11, "same", "2024-01-02"),  # same id twice: one survivor only, the smaller doc_key
        (12, 11, "same", "2024-01-02"),
    ])
    assert out["doc_key"].to_list() == [3, 4, 7, 9, 10, 11, 12]
    assert out["survivor_id"].to_list() == ["r-m", "r-m", "r-p", "r-p", "r-m", "same", "same"]
    assert out["is_survivor"].to_list() == [True, False, False, True, False, True, False]
    # the same input in any row order gives the same answer
    shuffled = survivors([(12, 11, "same", "2024-01-02"), (9, 7, "r-p", None), (4, 3, "r-y", "2024-01-01T00:00:00Z"),
                          (11, 11, "same", "2024-01-02"), (10, 3, "r-z", "2024-01-01T00:00:00Z"),
                          (7, 7, "r-q", None), (3, 3, "r-m", "2024-01-01T00:00:00Z")])
    assert shuffled.equals(out)


def test_estimate_jaccard_is_the_fraction_of_equal_values():
    a = np.arange(8, dtype=np.uint64)
    b = a.copy()
    b[:2] = 99
    assert estimate_jaccard(a, b) == 0.75 and estimate_jaccard(a, a) == 1.0
    with pytest.raises(ValueError, match="shape"):
        estimate_jaccard(a, a[:4])


def test_size_histogram_buckets_large_clusters_in_order():
    hist = size_histogram([3, 2, 2, 10, 11, 100, 101, 1000, 1001, 50_000])
    assert list(hist.items()) == [("2", 2), ("3", 1), ("10", 1), ("11-100", 2), ("101-1000", 2), (">1000", 2)]
    assert size_histogram([]) == {}
