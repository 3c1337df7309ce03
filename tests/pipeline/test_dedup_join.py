"""The crawl's join on disk: Large-Star/Small-Star components equal to a plain union-find on the graphs that are hard
for it (long paths, stars, many small components, files forced by a tiny budget), and duplicate_clusters written one
part a shard, equal to choosing survivors over the whole crawl at once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline import components, dedup_io
from pipeline.components import connected_components
from pipeline.dedup import choose_survivors
from tests.pipeline.test_dedup_ranges import CONFIG, planted_bands, store_with, whole_crawl_clusters


def union_find(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """Every node of some edge -> its component's smallest node, with a dictionary union-find: the obvious way."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        if x != y:
            rx, ry = find(x), find(y)
            parent[max(rx, ry)] = min(rx, ry)
    return {x: find(x) for x in parent}


def components_on_disk(tmp_path, sets: list[tuple[np.ndarray, np.ndarray]], memory_mb: float):
    found = connected_components(iter(sets), sum(len(a) for a, _ in sets), str(tmp_path / "cc"), memory_mb)
    labels: dict[int, int] = {}
    for nodes, roots in found.labels():
        for node, root in zip(nodes.tolist(), roots.tolist()):
            assert node not in labels, "a node labelled twice"
            labels[node] = root
    return labels, found


def graphs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    order = rng.permutation(4000) + (5 << 32)  # doc_keys of one shard, joined in a random order
    star_leaves = rng.choice(1 << 40, 3000, replace=False) + 10
    small = rng.integers(0, 6000, (2, 2500))
    return {
        "path in order": (np.arange(5000, dtype=np.int64)[:-1], np.arange(5000, dtype=np.int64)[1:]),
        "path in a random order": (order[:-1], order[1:]),
        "star on its largest node": (np.full(3000, 1 << 41), star_leaves),
        "many small components, duplicates and self-loops": (np.concatenate([small[0], small[0, :50], [9, 9]]),
                                                              np.concatenate([small[1], small[1, :50], [9, 7]])),
    }


@pytest.mark.parametrize("name", list(graphs()))
def test_components_on_disk_equal_a_union_find(tmp_path, name):
    a, b = graphs()[name]
    half = len(a) // 2
    labels, found = components_on_disk(tmp_path, [(a[:half], b[:half]), (a[half:], b[half:])], memory_mb=0.05)
    assert labels == union_find(a, b)
    assert found.files > 8  # the budget holds ~470 rows a file
    assert found.rounds <= 20
    assert not any((tmp_path / "cc").glob("*L")), "a generation left on disk"


def test_a_node_of_huge_degree_is_read_in_chunks_that_fit_the_budget(tmp_path, monkeypatch):
    """A cluster of 20,000 documents on one node: all of that node's rows are in its file, ~40 times what the budget
    holds. The file is read in chunks (twice), and no step sorts more rows than the budget's."""
    rng = np.random.default_rng(3)
    leaves = rng.choice(1 << 40, 20000, replace=False) + 100
    others = rng.choice(1 << 40, 5000, replace=False) + (1 << 41)  # some leaves have neighbours of their own
    a, b = np.concatenate([np.full(20000, 7), leaves[:5000]]), np.concatenate([leaves, others])
    held, grouped = [], components._grouped
    monkeypatch.setattr(components, "_grouped", lambda first, second: held.append(len(first)) or grouped(first, second))
    labels, found = components_on_disk(tmp_path, [(a, b)], memory_mb=0.05)
    assert labels == union_find(a, b) and set(labels.values()) == {7}
    assert found.chunk_rows == 468 and max(held) <= found.chunk_rows
    assert found.files > 100


def test_components_of_no_edges_are_empty(tmp_path):
    empty = np.zeros(0, dtype=np.int64)
    assert components_on_disk(tmp_path, [], 64)[0] == {}
    assert components_on_disk(tmp_path / "2", [(empty, empty), (np.array([3]), np.array([3]))], 64)[0] == {}


def with_docs(store, shards: list[np.ndarray]) -> None:
    """A docs part a shard, as minhash_signatures writes it: ids and dates that make survivors differ from the
    smallest doc_key (the later shard's documents are the earlier copies)."""
    rng = np.random.default_rng(11)
    for s, hashes in enumerate(shards):
        directory = dedup_io.signature_dir(f"{s:05d}", CONFIG)
        n = len(hashes)
        dates = [None if d == 0 else f"2024-{d:02d}-01T00:00:00Z" for d in rng.integers(0, 13, n) - s]
        store.write_part(dedup_io.SIGNATURES, "c", directory, "docs", pl.DataFrame({
            "id": [f"<urn:uuid:{s}-{row}>" for row in range(n)],
            "date": pl.Series(dates, dtype=pl.String),
            "url": [f"https://example.com/{s}/{row}" for row in range(n)],
            "doc_key": (np.int64(s) << 32) + np.arange(n, dtype=np.int64),
            "signature": pl.Series(rng.integers(0, 50, (n, 12), dtype=np.uint64).tolist(), dtype=pl.List(pl.UInt64)),
        }))
        manifest = store.manifest(dedup_io.SIGNATURES, "c", directory)
        store.commit(dedup_io.SIGNATURES, "c", directory, ["docs"], manifest, files=dedup_io.BAND_FILES)


def test_clusters_are_written_a_part_a_shard_equal_to_the_whole_crawl(tmp_path, monkeypatch):
    shards = planted_bands(3, 1500, seed=9)
    store = store_with(tmp_path, shards)
    with_docs(store, shards)
    names = [f"{s:05d}" for s in range(len(shards))]
    monkeypatch.setattr(dedup_io, "PAIRS_PART_ROWS", 100)  # a range's pairs in several parts, read one at a time
    for key in dedup_io.range_keys():
        dedup_io.compute_pairs(store, "c", names, CONFIG, key, 64)
    assert len(store.parts(dedup_io.PAIRS, "c", "0")) > 1
    stats = dedup_io.compute_clusters(store, "c", names, CONFIG, 0.02, workdir=str(tmp_path))  # ~190 edges a file

    docs = pl.concat([store.read_part(dedup_io.SIGNATURES, "c", dedup_io.signature_dir(n, CONFIG), "docs")
                      for n in names])
    whole = choose_survivors(whole_crawl_clusters(shards).join(docs.select("doc_key", "id", "date"), on="doc_key"))
    assert store.parts(dedup_io.CLUSTERS, "c", dedup_io.CRAWL_SHARD) == names
    for s, name in enumerate(names):
        part = store.read_part(dedup_io.CLUSTERS, "c", dedup_io.CRAWL_SHARD, name)
        assert part.schema == pl.Schema(dedup_io.CLUSTER_SCHEMA)
        assert part.equals(whole.filter(pl.col("doc_key") // (1 << 32) == s).select(list(part.columns)))
        losers = part.filter(~pl.col("is_survivor"))
        assert dedup_io.duplicates_in_shard(store, "c", name) == dict(zip(losers["id"], losers["survivor_id"]))
    sizes = whole.group_by("cluster").len()["len"]
    assert stats["documents"] == 4500 and stats["documents_in_clusters"] == whole.height > 1000
    assert stats["clusters"] == len(sizes) and stats["removed"] == whole.height - len(sizes)
    assert sum(stats["size_histogram"].values()) == len(sizes)
    assert stats["join"]["files"] > 8 and stats["join"]["member_files"] > 8  # both steps spread over many files
    first = whole.filter(~pl.col("is_survivor")).head(5)
    kept = dict(zip(docs["doc_key"], docs["url"]))
    assert [e["dropped"] for e in stats["examples"]] == [kept[k] for k in first["doc_key"]]
    assert not list(tmp_path.glob("duplicate_clusters-*")), "the work directory was left"


def test_no_clusters_still_write_a_part_a_shard_with_the_schema(tmp_path):
    distinct = np.random.default_rng(5).integers(0, 2**64, (30, CONFIG.bands), dtype=np.uint64)
    shards = [np.zeros((0, CONFIG.bands), dtype=np.uint64), distinct]  # an empty shard, and no two documents alike
    store = store_with(tmp_path, shards)
    with_docs(store, shards)
    for key in dedup_io.range_keys():
        dedup_io.compute_pairs(store, "c", ["00000", "00001"], CONFIG, key, 64)
    stats = dedup_io.compute_clusters(store, "c", ["00000", "00001"], CONFIG, 64)
    assert stats["clusters"] == stats["removed"] == 0 and stats["examples"] == [] and stats["size_histogram"] == {}
    for name in ("00000", "00001"):
        part = store.read_part(dedup_io.CLUSTERS, "c", dedup_io.CRAWL_SHARD, name)
        assert part.height == 0 and part.schema == pl.Schema(dedup_io.CLUSTER_SCHEMA)
        assert dedup_io.duplicates_in_shard(store, "c", name) == {}
    with pytest.raises(dedup_io.PartitionMissing, match="no part for shard '00002'"):
        dedup_io.duplicates_in_shard(store, "c", "00002")
