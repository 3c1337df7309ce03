"""Where MinHash deduplication meets storage: sorted band tables per shard, pairs per range of band hash values,
clusters per crawl.

Signatures are keyed by their config (`minhash_signatures/{crawl}/{shard}/{config key}.sorted/`), so signatures from
an earlier config (or the earlier layout) are never mixed into a clustering run with another. `duplicate_pairs` has
one partition per range of band hash values (N_RANGES), each read from every shard by byte range under a memory
budget; `duplicate_clusters` joins the ranges' pairs. Within a crawl a document is `doc_key =
shard_index << 32 | row`, an int64, so the per-crawl step holds 8-16 bytes a document, never its text or id.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import posixpath
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.dedup import (
    BUCKETS,
    bucket_of,
    bucket_range,
    choose_survivors,
    cluster,
    estimate_jaccard,
    size_histogram,
    split_buckets,
)
from pipeline.components import PairFiles, connected_components, file_of
from pipeline.minhash import MinHashConfig, MinHasher, band_hashes
from pipeline.storage import PartitionMissing, Store

SIGNATURES = "minhash_signatures"
PAIRS = "duplicate_pairs"
CLUSTERS = "duplicate_clusters"
LAYOUT = "sorted"  # the signatures' band tables: sorted by hash, with a bucket index (bands.bin, bands.idx)
BAND_FILES = ["bands.bin", "bands.idx"]


def _ranges_from_env() -> int:
    """CRAWL2CHAT_DEDUP_RANGES: how many duplicate_pairs partitions (parallel pods) a crawl's clustering has."""
    value = os.environ.get("CRAWL2CHAT_DEDUP_RANGES", "16")
    n = int(value) if value.isdigit() else 0
    if not 1 <= n <= BUCKETS or n & (n - 1):
        raise ValueError(f"CRAWL2CHAT_DEDUP_RANGES must be a power of two from 1 to {BUCKETS}, got {value!r}")
    return n


N_RANGES = _ranges_from_env()  # ranges of band hash values, each its own duplicate_pairs partition
BYTES_PER_ROW = 64  # peak bytes a (band hash, doc_key) row of one band costs while its range is clustered
BYTES_PER_MEMBER = 400  # peak bytes a cluster member (doc_key, cluster, id, date) costs while its survivor is chosen
PAIR_SCHEMA = {"doc_key": pl.Int64, "cluster": pl.Int64}
PAIRS_PART_ROWS = 1_000_000  # rows a duplicate_pairs part: duplicate_clusters reads one at a time, ~100 B a row
CRAWL_SHARD = "all"  # the one "shard" of a per-crawl asset's storage
MEMBER_SCHEMA = {"doc_key": pl.Int64, "cluster": pl.Int64, "id": pl.String, "date": pl.String}
CLUSTER_SCHEMA = {
    "doc_key": pl.Int64,
    "id": pl.String,
    "cluster": pl.Int64,
    "survivor_id": pl.String,
    "is_survivor": pl.Boolean,
}


def signature_dir(shard: str, config: MinHashConfig) -> str:
    return f"{shard}/{config.key()}.{LAYOUT}"


def write_signatures(
    store: Store, crawl: str, shard: str, docs: Iterator[pl.DataFrame], config: MinHashConfig
) -> dict:
    """Signs every document of a shard; writes its sorted band tables (`bands.bin`, `bands.idx`) and a `docs` part.

    `bands.bin` holds, band after band, the shard's band hashes sorted (uint64) then their doc_keys (int64);
    `bands.idx` (.npy) the row where each bucket of hash values starts in each band, so a range of hash values is
    one byte range of the file, read without the rest (also from S3).
    """
    hasher = MinHasher(config)
    shard_index = int(shard)
    hashes: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    meta: list[pl.DataFrame] = []
    signatures: list[np.ndarray] = []
    row = 0
    for df in docs:
        if df.height == 0:
            continue
        sigs = hasher.signatures(df["text"].to_list())
        hashes.append(band_hashes(sigs, config))
        keys.append((np.int64(shard_index) << 32) + np.arange(row, row + df.height, dtype=np.int64))
        row += df.height
        signatures.append(sigs)
        meta.append(df.select("id", "date", "url"))
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    all_hashes = np.concatenate(hashes) if hashes else np.zeros((0, config.bands), dtype=np.uint64)
    directory = signature_dir(shard, config)
    digest = write_band_tables(store, crawl, directory, all_hashes, all_keys)
    empty = pl.DataFrame(schema={"id": pl.String, "date": pl.String, "url": pl.String})
    docs_table = pl.concat(meta) if meta else empty
    width = config.bands * config.rows
    sig_values = np.concatenate(signatures) if signatures else np.zeros((0, width), dtype=np.uint64)
    docs_table = docs_table.with_columns(
        pl.Series("doc_key", all_keys, dtype=pl.Int64),
        pl.Series("signature", sig_values.tolist(), dtype=pl.List(pl.UInt64)),
    )
    store.write_part(SIGNATURES, crawl, directory, "docs", docs_table)
    info = {"config": config.as_dict(), "config_hash": config.key(), "bands_sha256": digest,
            "stats": {"documents": int(row)}}
    store.commit(SIGNATURES, crawl, directory, ["docs"], info, files=BAND_FILES)
    return {"documents": int(row), "config_key": config.key()}


def write_band_tables(store: Store, crawl: str, directory: str, hashes: np.ndarray, keys: np.ndarray) -> str:
    """Writes `bands.bin` and `bands.idx` of (n, bands) band hashes and their n doc_keys (uncommitted); returns the
    sha256 of `bands.bin`, for the manifest: the clusters' input fingerprint changes whenever a shard's content does.
    """
    n, n_bands = hashes.shape
    index = np.zeros((n_bands, BUCKETS + 1), dtype=np.int64)
    body = io.BytesIO()
    for b in range(n_bands):
        order = np.argsort(hashes[:, b], kind="stable")
        sorted_hashes = hashes[order, b]
        index[b] = np.searchsorted(bucket_of(sorted_hashes), np.arange(BUCKETS + 1))
        body.write(sorted_hashes.astype("<u8").tobytes())
        body.write(keys[order].astype("<i8").tobytes())
    folder = store.partition_dir(SIGNATURES, crawl, directory)
    store.write_bytes(posixpath.join(folder, "bands.bin"), body.getvalue())
    digest = hashlib.sha256(body.getbuffer()).hexdigest()
    buf = io.BytesIO()
    np.save(buf, index, allow_pickle=False)
    store.write_bytes(posixpath.join(folder, "bands.idx"), buf.getvalue())
    return digest


def signatures_fingerprint(store: Store, crawl: str, shards: list[str], config: MinHashConfig) -> str:
    """A hash of the committed signature manifests of every shard: changes when any shard's input changes.

    Raises PartitionMissing naming the first shard with no signatures for this config.
    """
    digest = hashlib.sha256(config.key().encode())
    for shard in shards:
        manifest = store.manifest(SIGNATURES, crawl, signature_dir(shard, config))
        digest.update(f"{shard}:{json.dumps(manifest, sort_keys=True)}".encode())
    return digest.hexdigest()[:16]


def range_keys() -> list[str]:
    """The duplicate_pairs partitions of a crawl: ranges of band hash values, named by their first hex digit."""
    width = len(f"{N_RANGES - 1:x}")
    return [f"{i:0{width}x}" for i in range(N_RANGES)]


def range_buckets(range_key: str) -> tuple[int, int]:
    """[first, end) buckets of a duplicate_pairs partition."""
    keys = range_keys()
    if range_key not in keys:
        raise ValueError(f"range {range_key!r} is not one of the {N_RANGES} ranges (CRAWL2CHAT_DEDUP_RANGES)")
    return bucket_range(keys.index(range_key), N_RANGES)


@dataclass(frozen=True)
class ShardBands:
    """Where one shard's band tables are, and the rows at which each bucket of one range starts in each band."""

    directory: str
    rows: int  # documents of the shard: rows of each band
    starts: np.ndarray  # (bands, buckets of the range + 1)
    first: int  # the range's first bucket

    @classmethod
    def load(cls, store: Store, crawl: str, directory: str, first: int, end: int) -> ShardBands:
        index = np.load(io.BytesIO(store.read_file(SIGNATURES, crawl, directory, "bands.idx")), allow_pickle=False)
        return cls(directory, int(index[0, -1]), index[:, first : end + 1].copy(), first)

    def read(self, store: Store, crawl: str, band: int, first: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(band hashes, doc_keys) of one band in buckets [first, end): two byte ranges of `bands.bin`."""
        lo, hi = int(self.starts[band, first - self.first]), int(self.starts[band, end - self.first])
        if hi == lo:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        path = posixpath.join(store.partition_dir(SIGNATURES, crawl, self.directory), "bands.bin")
        start = band * 16 * self.rows
        # by keyword: s3fs's cat_file takes a version_id before start and end
        hashes = store.fs.cat_file(path, start=start + 8 * lo, end=start + 8 * hi)
        keys = store.fs.cat_file(path, start=start + 8 * (self.rows + lo), end=start + 8 * (self.rows + hi))
        return np.frombuffer(hashes, dtype="<u8").astype(np.uint64), np.frombuffer(keys, dtype="<i8").astype(np.int64)


def compute_pairs(store: Store, crawl: str, shards: list[str], config: MinHashConfig, range_key: str,
                  memory_mb: int) -> dict:
    """Clusters the documents that collide in one range of band hash values; writes them as (doc_key, cluster) pairs.

    The range is read in spans of buckets whose rows of any one band stay within `memory_mb` (at BYTES_PER_ROW),
    one band of one span at a time, from every shard's `bands.bin` by byte range, and each span's pairs are written
    before the next is read (duplicate_clusters joins them): memory is bounded by the budget, not by the crawl's size
    (plus 2 KB a shard of bucket index).
    """
    fingerprint = signatures_fingerprint(store, crawl, shards, config)
    first, end = range_buckets(range_key)
    bands = [ShardBands.load(store, crawl, signature_dir(s, config), first, end) for s in shards]
    rows = sum((np.diff(sb.starts, axis=1) for sb in bands), np.zeros((config.bands, end - first), dtype=np.int64))
    max_rows = memory_mb * 2**20 // BYTES_PER_ROW
    spans = split_buckets(rows, first, end, max_rows)
    parts, n_pairs = [], 0
    for lo, hi in spans:
        def band_table(b: int, lo=lo, hi=hi) -> pl.DataFrame:
            pieces = [sb.read(store, crawl, b, lo, hi) for sb in bands]
            return pl.DataFrame({
                "band_hash": np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, dtype=np.uint64),
                "doc_key": np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, dtype=np.int64),
            })

        pairs = cluster(band_table, config.bands).filter(pl.col("doc_key") != pl.col("cluster")).cast(PAIR_SCHEMA)
        for start in range(0, pairs.height, PAIRS_PART_ROWS):
            parts.append(f"pairs-{len(parts):04d}")
            store.write_part(PAIRS, crawl, range_key, parts[-1], pairs.slice(start, PAIRS_PART_ROWS))
        n_pairs += pairs.height
        del pairs
    if not parts:  # an empty range is a normal range: one part with the schema
        parts.append("pairs-0000")
        store.write_part(PAIRS, crawl, range_key, parts[-1], pl.DataFrame(schema=PAIR_SCHEMA))
    span_rows = [int(rows[:, s - first : e - first].sum(axis=1).max()) for s, e in spans]
    stats = {"rows": int(rows.sum()), "spans": len(spans), "largest_span_rows": max(span_rows, default=0),
             "pairs": n_pairs}
    info = {"config": config.as_dict(), "config_hash": config.key(), "inputs": fingerprint, "buckets": [first, end],
            "memory_mb": memory_mb, "stats": stats}
    store.commit(PAIRS, crawl, range_key, parts, info)
    return stats


def pair_parts(store: Store, crawl: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(doc_key, cluster) of every committed part of every range's pairs, one part at a time."""
    for key in range_keys():
        for part in store.parts(PAIRS, crawl, key):
            table = store.read_part(PAIRS, crawl, key, part)
            yield table["doc_key"].to_numpy(), table["cluster"].to_numpy()


def compute_clusters(store: Store, crawl: str, shards: list[str], config: MinHashConfig, memory_mb: float,
                     workdir: str | None = None) -> dict:
    """Joins the pairs of every range into clusters and writes the members of every cluster with its survivor, one
    part a shard (named by the shard; empty when none of its documents is a duplicate).

    Every step holds at most ~`memory_mb`, or one shard: the components are found on local disk
    (`connected_components`, under `workdir` or TMPDIR: <= 48 bytes a pair); the members go to files by shard, get their
    id and date from each shard's docs one shard at a time, go to files by cluster, where each file's survivors are
    chosen, and back to files by shard, each written as its part. The stats are summed file by file.
    """
    fingerprint = signatures_fingerprint(store, crawl, shards, config)
    keys = range_keys()
    n_pairs = 0
    for key in keys:
        made = store.manifest(PAIRS, crawl, key)
        if made["inputs"] != fingerprint:
            raise PartitionMissing(f"duplicate_pairs crawl={crawl!r} range={key!r} was made from other signatures "
                                   "than the shards' current ones: materialize it again")
        if made["buckets"] != list(range_buckets(key)):
            raise PartitionMissing(f"duplicate_pairs crawl={crawl!r} range={key!r} was made with another number of "
                                   "ranges (CRAWL2CHAT_DEDUP_RANGES): materialize every range again")
        n_pairs += made["stats"]["pairs"]
    position = {int(s): i for i, s in enumerate(shards)}
    with tempfile.TemporaryDirectory(prefix="duplicate_clusters-", dir=workdir) as tmp:
        found = connected_components(pair_parts(store, crawl), n_pairs, os.path.join(tmp, "edges"), memory_mb)
        by_shard = PairFiles(os.path.join(tmp, "members"), max(len(shards), 1))
        for members, roots in found.labels():
            by_shard.append(members, roots, _shard_positions(members, position))
        found.stars.remove()
        n_files = max(1, math.ceil(by_shard.bytes() // 16 * BYTES_PER_MEMBER / (memory_mb * 2**20)))
        by_cluster = _FrameFiles(os.path.join(tmp, "clusters"), n_files, MEMBER_SCHEMA)
        for i, shard in enumerate(shards):
            members, roots = by_shard.read(i)
            if len(members):
                wanted = pl.DataFrame({"doc_key": members, "cluster": roots})
                docs = _read_docs(store, crawl, shard, config, ["doc_key", "id", "date"], members)
                members = wanted.join(docs, on="doc_key").select(list(MEMBER_SCHEMA)).cast(MEMBER_SCHEMA)
                by_cluster.append(members, file_of(members["cluster"].to_numpy(), n_files))
        by_shard.remove()
        chosen = _FrameFiles(os.path.join(tmp, "chosen"), max(len(shards), 1), CLUSTER_SCHEMA)
        summary = ClusterStats()
        for i in range(n_files):
            table = choose_survivors(by_cluster.pop(i)).select(list(CLUSTER_SCHEMA)).cast(CLUSTER_SCHEMA)
            summary.add(table)
            chosen.append(table, _shard_positions(table["doc_key"].to_numpy(), position))
        for i, shard in enumerate(shards):
            table = chosen.pop(i).sort("doc_key")
            store.write_part(CLUSTERS, crawl, CRAWL_SHARD, shard, table)
    n_docs = sum(store.manifest(SIGNATURES, crawl, signature_dir(s, config))["stats"]["documents"] for s in shards)
    examples = _example_pairs(store, crawl, shards, config, summary.examples)
    stats = {"documents": n_docs, **summary.as_dict(), "examples": examples,
             "join": {"rounds": found.rounds, "files": found.files, "peak_disk_bytes": found.peak_disk_bytes,
                      "member_files": n_files}}
    info = {"config": config.as_dict(), "config_hash": config.key(), "inputs": fingerprint, "shards": shards,
            "memory_mb": memory_mb, "stats": stats}
    store.commit(CLUSTERS, crawl, CRAWL_SHARD, shards, info)
    return stats


def clusters_fingerprint(store: Store, crawl: str) -> str:
    """The fingerprint of the signatures the committed clusters were computed from."""
    return store.manifest(CLUSTERS, crawl, CRAWL_SHARD)["inputs"]


def duplicates_in_shard(store: Store, crawl: str, shard: str) -> dict[str, str]:
    """id -> survivor id, for the documents of one shard that lose to another member of their cluster: the shard's
    own part, never the whole crawl's."""
    if shard not in store.parts(CLUSTERS, crawl, CRAWL_SHARD):
        raise PartitionMissing(f"duplicate_clusters crawl={crawl!r} has no part for shard {shard!r} (made before the "
                               "shard was, or in the one-table layout): materialize it again")
    losers = store.read_part(CLUSTERS, crawl, CRAWL_SHARD, shard).filter(~pl.col("is_survivor"))
    return dict(zip(losers["id"], losers["survivor_id"]))


def _shard_positions(doc_keys: np.ndarray, position: dict[int, int]) -> np.ndarray:
    """The index in the crawl's shard list of each doc_key's shard (doc_key >> 32)."""
    numbers = np.array(sorted(position), dtype=np.int64)
    found = np.searchsorted(numbers, doc_keys >> 32)
    if len(doc_keys) and (found.max() >= len(numbers) or np.any(numbers[found] != doc_keys >> 32)):
        raise ValueError(f"doc_keys of shards not in {sorted(position)[:5]}...: the pairs and shards disagree")
    return np.array([position[int(s)] for s in numbers], dtype=np.int64)[found]


def _read_docs(store: Store, crawl: str, shard: str, config: MinHashConfig, columns: list[str],
               doc_keys: np.ndarray) -> pl.DataFrame:
    """`columns` of a shard's docs part (read alone: the signatures are ~900 bytes a document), rows of `doc_keys`."""
    path = posixpath.join(store.partition_dir(SIGNATURES, crawl, signature_dir(shard, config)), "part-docs.parquet")
    with store.fs.open(path, "rb") as f:
        docs = pl.read_parquet(f, columns=columns)
    return docs.filter(pl.col("doc_key").is_in(pl.Series(doc_keys, dtype=pl.Int64).implode()))


class _FrameFiles:
    """N local files of polars frames, appended to by row and read back one file at a time (Arrow IPC, each append
    one length-prefixed stream)."""

    def __init__(self, folder: str, n: int, schema: dict):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.n, self.schema = folder, n, schema

    def append(self, df: pl.DataFrame, files: np.ndarray) -> None:
        for (i,), part in df.with_columns(_file=pl.Series(files)).partition_by("_file", as_dict=True).items():
            buf = io.BytesIO()
            part.drop("_file").write_ipc_stream(buf)
            with open(os.path.join(self.folder, f"{i:05d}.arrows"), "ab") as f:
                f.write(len(buf.getbuffer()).to_bytes(8, "little"))
                f.write(buf.getbuffer())

    def pop(self, i: int) -> pl.DataFrame:
        """File i's rows; the file is deleted, so the disk holds each row once while it moves to other files."""
        path = os.path.join(self.folder, f"{i:05d}.arrows")
        if not os.path.exists(path):
            return pl.DataFrame(schema=self.schema)
        frames = []
        with open(path, "rb") as f:
            while size := int.from_bytes(f.read(8), "little"):
                frames.append(pl.read_ipc_stream(io.BytesIO(f.read(size))))
        os.remove(path)
        return pl.concat(frames) if frames else pl.DataFrame(schema=self.schema)


class ClusterStats:
    """The manifest's stats, summed over files that each hold whole clusters (doc_key, cluster, is_survivor)."""

    def __init__(self, n_examples: int = 5):
        self.sizes: Counter[int] = Counter()
        self.members = self.removed = 0
        self.n_examples = n_examples
        self.examples = pl.DataFrame(schema={"doc_key": pl.Int64, "survivor": pl.Int64})  # smallest losers

    def add(self, table: pl.DataFrame) -> None:
        self.sizes.update(table.group_by("cluster").len()["len"].to_list())
        self.members += table.height
        self.removed += int((~table["is_survivor"]).sum())
        survivors = table.filter(pl.col("is_survivor")).select("cluster", survivor="doc_key")
        losers = table.filter(~pl.col("is_survivor")).sort("doc_key").head(self.n_examples)
        found = losers.join(survivors, on="cluster").select("doc_key", "survivor")
        self.examples = pl.concat([self.examples, found]).sort("doc_key").head(self.n_examples)

    def as_dict(self) -> dict:
        return {"clusters": self.sizes.total(), "documents_in_clusters": self.members, "removed": self.removed,
                "size_histogram": size_histogram(self.sizes)}


def _example_pairs(store: Store, crawl: str, shards: list[str], config: MinHashConfig,
                   examples: pl.DataFrame) -> list[dict]:
    """(survivor, duplicate) pairs (doc_key, survivor) with their estimated Jaccard similarity, for a person to check:
    the url and signature of each read from its shard's docs."""
    keys = np.concatenate([examples["doc_key"].to_numpy(), examples["survivor"].to_numpy()])
    wanted = {int(k) >> 32 for k in keys}
    columns = ["doc_key", "url", "signature"]
    docs = [_read_docs(store, crawl, s, config, columns, keys) for s in shards if int(s) in wanted]
    docs = pl.concat(docs) if docs else pl.DataFrame()
    urls = dict(zip(docs["doc_key"], docs["url"])) if docs.height else {}
    sigs = dict(zip(docs["doc_key"], docs["signature"])) if docs.height else {}
    pairs = []
    for drop, keep in examples.iter_rows():
        jaccard = estimate_jaccard(np.array(sigs[keep], dtype=np.uint64), np.array(sigs[drop], dtype=np.uint64))
        pairs.append({"kept": urls[keep], "dropped": urls[drop], "jaccard": round(float(jaccard), 3)})
    return pairs
