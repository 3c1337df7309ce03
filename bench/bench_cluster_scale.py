"""Dedup clustering at dump scale: ranges of band hash values under a memory budget, against clustering in one process.

    .venv/bin/python -m bench.bench_cluster_scale [--docs 100000000] [--shards 100] [--memory-mb 1024]
        [--join-memory-mb MB ...] [--hub-docs N] [--reference] [--root DIR] [--keep] [--join-only]

Writes a synthetic crawl of `--docs` documents as `--shards` shards of real sorted band tables (14 bands; the layout
`minhash_signatures` writes: bands.bin + bands.idx), with 10% near-duplicates that share each band with a random
other document with probability 0.4 (chains across shards), and with --hub-docs one cluster of that many documents.
Then, each in a fresh process (as each would be its own pod), with its time and peak RSS (VmHWM):
  - `duplicate_pairs` for each of the 16 ranges (pipeline.dedup_io.compute_pairs under --memory-mb);
  - the join of the ranges' pairs into clusters on disk under each --join-memory-mb (duplicate_clusters' join:
    pipeline.components.connected_components, then its labels written by shard), with its rounds and disk bytes;
  - the in-memory union-find over the same pairs (pipeline.dedup.join_pairs, the join before), asserted to give
    identical clusters;
  - with --reference, the one-process path: `cluster()` over each whole band of the crawl (every shard's band read
    and concatenated), asserted to give identical clusters too.
The disk needs 16 bytes a document a band (22 GB at 100M documents); the data is deleted unless --keep, and
--join-only reruns the joins on a kept crawl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import polars as pl
from tqdm import tqdm

from bench.common import OUT, machine
from pipeline import dedup_io
from pipeline.components import PairFiles, connected_components
from pipeline.dedup import cluster, join_pairs
from pipeline.minhash import MinHashConfig, _fmix64
from pipeline.storage import Store

CONFIG = MinHashConfig()  # 14 bands x 8 rows
CRAWL = "synthetic"
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def shard_names(n: int) -> list[str]:
    return [f"{s:05d}" for s in range(n)]


def synthetic_shard(s: int, per_shard: int, n_docs: int, hub_docs: int = 0) -> np.ndarray:
    """(per_shard, bands) band hashes of shard s: document g's band b is a hash of (g, b), except that 10% of the
    documents copy band b of document orig(g) with probability 0.4; and `hub_docs` documents spread over the crawl
    share band 0, one cluster as a crawl's boilerplate pages make (its star's centre holds all its edges)."""
    g = np.arange(s * per_shard, (s + 1) * per_shard, dtype=np.uint64)
    dup = _fmix64(g ^ np.uint64(0x5EED)) % np.uint64(10) == 0
    orig = _fmix64(g ^ np.uint64(0x0216)) % np.uint64(n_docs)
    out = np.empty((per_shard, CONFIG.bands), dtype=np.uint64)
    for b in range(CONFIG.bands):
        salt = _fmix64(np.array([b + 1], dtype=np.uint64) * GOLDEN)[0]
        own = _fmix64(g * GOLDEN + salt)
        share = dup & (_fmix64(g ^ salt) % np.uint64(10) < 4)
        own[share] = _fmix64(orig[share] * GOLDEN + salt)
        if b == 0 and hub_docs:
            own[g % np.uint64(max(1, n_docs // hub_docs)) == 0] = GOLDEN
        out[:, b] = own
    return out


def generate(store: Store, n_docs: int, n_shards: int, hub_docs: int) -> float:
    start = time.perf_counter()
    per_shard = n_docs // n_shards
    for s, name in enumerate(tqdm(shard_names(n_shards), desc="writing shards", unit="shard")):
        directory = dedup_io.signature_dir(name, CONFIG)
        if store.committed(dedup_io.SIGNATURES, CRAWL, directory):
            continue  # resumable: a killed generation goes on where it stopped
        keys = (np.int64(s) << 32) + np.arange(per_shard, dtype=np.int64)
        digest = dedup_io.write_band_tables(store, CRAWL, directory, synthetic_shard(s, per_shard, n_docs, hub_docs), keys)
        store.commit(dedup_io.SIGNATURES, CRAWL, directory, [], {"bands_sha256": digest,
                     "stats": {"documents": per_shard}}, files=dedup_io.BAND_FILES)
    return time.perf_counter() - start


def _kib(field: str) -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))


def child(args) -> dict:
    """One step in this fresh process: its seconds and peak RSS (MB)."""
    store, shards = Store(args.root), shard_names(args.shards)
    start = time.perf_counter()
    keys = dedup_io.range_keys()
    if args.child == "join":  # as compute_clusters: components on disk, their labels to files by shard
        n_pairs = sum(store.manifest(dedup_io.PAIRS, CRAWL, key)["stats"]["pairs"] for key in keys)
        with tempfile.TemporaryDirectory(dir=args.root) as tmp:
            found = connected_components(dedup_io.pair_parts(store, CRAWL), n_pairs, f"{tmp}/edges", args.memory_mb)
            by_shard = PairFiles(f"{tmp}/members", args.shards)
            for members, roots in found.labels():
                by_shard.append(members, roots, members >> 32)
            found.stars.remove()
            n_clusters = 0
            for s in range(args.shards):  # the labels, kept for the checks (not part of the join's memory)
                members, roots = by_shard.read(s)
                n_clusters += int((members == roots).sum())
                pl.DataFrame({"doc_key": members, "cluster": roots}).write_parquet(f"{args.root}/joined-{s}.parquet")
        result = {"pairs": n_pairs, "documents_in_clusters": int(by_shard.rows.sum()), "clusters": n_clusters,
                  "rounds": found.rounds, "files": found.files, "peak_disk_bytes": found.peak_disk_bytes}
    elif args.child == "union_find":
        parts = [(key, part) for key in keys for part in store.parts(dedup_io.PAIRS, CRAWL, key)]
        members = join_pairs(lambda i: store.read_part(dedup_io.PAIRS, CRAWL, *parts[i]), len(parts))
        seconds = time.perf_counter() - start
        joined = pl.read_parquet(f"{args.root}/joined-*.parquet").sort("doc_key")
        result = {"documents_in_clusters": members.height, "identical": members.equals(joined), "seconds": seconds}
    elif args.child == "reference":
        def band_table(b: int) -> pl.DataFrame:
            pieces = []
            for name in shards:
                bands = dedup_io.ShardBands.load(store, CRAWL, dedup_io.signature_dir(name, CONFIG), 0, 4096)
                pieces.append(bands.read(store, CRAWL, b, 0, 4096))
            return pl.DataFrame({"band_hash": np.concatenate([p[0] for p in pieces]),
                                 "doc_key": np.concatenate([p[1] for p in pieces])})

        members = cluster(band_table, CONFIG.bands)
        seconds = time.perf_counter() - start
        joined = pl.read_parquet(f"{args.root}/joined-*.parquet").sort("doc_key")
        result = {"documents_in_clusters": members.height, "identical": members.equals(joined), "seconds": seconds}
    else:
        result = dedup_io.compute_pairs(store, CRAWL, shards, CONFIG, args.child, args.memory_mb)
    return {"seconds": time.perf_counter() - start, **result, "peak_rss_mb": _kib("VmHWM") / 1024}


def run_child(args, step: str, memory_mb: float | None = None) -> dict:
    command = [sys.executable, "-m", "bench.bench_cluster_scale", "--child", step, "--root", args.root,
               "--shards", str(args.shards), "--memory-mb", f"{memory_mb or args.memory_mb:g}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--hub-docs", type=int, default=0, help="documents of one planted cluster (default: none)")
    parser.add_argument("--memory-mb", type=float, default=1024, help="duplicate_pairs' budget (dedup_memory_mb)")
    parser.add_argument("--join-memory-mb", type=float, nargs="+", help="the join's budgets (default: --memory-mb)")
    parser.add_argument("--reference", action="store_true", help="also run the one-process path (needs ~60 B/doc)")
    parser.add_argument("--join-only", action="store_true", help="only the joins, on a crawl kept with --keep")
    parser.add_argument("--root", default="/tmp/crawl2chat-cluster-bench")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic crawl")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    store = Store(args.root)
    generate_s = 0.0 if args.join_only else generate(store, args.docs, args.shards, args.hub_docs)
    ranges = [] if args.join_only else [
        run_child(args, key) for key in tqdm(dedup_io.range_keys(), desc="duplicate_pairs", unit="range")]
    joins = [{"memory_mb": mb, **run_child(args, "join", mb)} for mb in args.join_memory_mb or [args.memory_mb]]
    union_find = run_child(args, "union_find")  # against the last join's clusters
    reference = run_child(args, "reference") if args.reference else None
    result = {
        "machine": machine(), "documents": args.docs, "shards": args.shards, "bands": CONFIG.bands,
        "memory_mb": args.memory_mb, "hub_docs": args.hub_docs, "generate_seconds": generate_s,
        "pairs_seconds": sum(r["seconds"] for r in ranges),
        "pairs_peak_rss_mb": max((r["peak_rss_mb"] for r in ranges), default=0),
        "spans": sum(r["spans"] for r in ranges), "ranges": ranges, "joins": joins, "union_find": union_find,
        "reference": reference,
    }
    assert union_find["identical"], "the join on disk differs from the in-memory union-find"
    if reference:
        assert reference["identical"], "the ranges' clusters differ from clustering in one process"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cluster_scale.json").write_text(json.dumps(result, indent=1))
    print(f"{args.docs:,} documents, {args.shards} shards x {CONFIG.bands} bands, budget {args.memory_mb} MB")
    print(f"  write the sorted band tables: {generate_s:.0f} s")
    print(f"  duplicate_pairs, 16 ranges one after another: {result['pairs_seconds']:.0f} s, "
          f"peak RSS {result['pairs_peak_rss_mb']:.0f} MB (max over ranges), {result['spans']} spans")
    for join in joins:
        print(f"  join on disk, budget {join['memory_mb']:g} MB: {join['seconds']:.0f} s, peak RSS "
              f"{join['peak_rss_mb']:.0f} MB, {join['rounds']} rounds, {join['files']} files, peak disk "
              f"{join['peak_disk_bytes'] / 2**30:.2f} GiB; {join['pairs']:,} pairs -> {join['clusters']:,} clusters "
              f"of {join['documents_in_clusters']:,} documents")
    print(f"  join in memory (union-find, before): {union_find['seconds']:.0f} s, peak RSS "
          f"{union_find['peak_rss_mb']:.0f} MB; identical clusters: {union_find['identical']}")
    if reference:
        print(f"  reference, cluster() in one process: {reference['seconds']:.0f} s, peak RSS "
              f"{reference['peak_rss_mb']:.0f} MB; identical clusters: {reference['identical']}")
    if not args.keep:
        shutil.rmtree(args.root)


if __name__ == "__main__":
    main()
