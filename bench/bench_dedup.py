"""MinHash dedup against datasketch: signatures, LSH clustering, and the memory of clustering a million documents.

    .venv/bin/python -m bench.bench_dedup [--repeat K] [--docs N]

Input: the sample's English documents, each repeated K times (default 10: ~3,000 documents) with one word changed
per copy, so every copy is a real near-duplicate. Rows (best of 3, ratio = ours / reference in documents/s):
  - MinHash signatures: `MinHasher.signatures` against one `datasketch.MinHash` a document, `update()` per shingle,
    both from the text and on the same shingles; asserted bit-identical first.
  - Clustering (LSH 14x8): band hashes + `cluster` against `datasketch.MinHashLSH` insert + query + union-find, both
    from the precomputed signatures; asserted to give the same clusters.
Memory: peak RSS increase of `cluster` over synthetic band tables of N documents (default 1,000,000; 5% planted
near-duplicates), in a fresh subprocess each, for 14 and 28 bands: bounded by one band, not by the number of bands.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import polars as pl

from bench.common import compare, english_docs, save
from pipeline.dedup import cluster
from pipeline.minhash import MinHashConfig, MinHasher, band_hashes, shingles


def near_copies(docs: list[str], repeat: int) -> list[str]:
    """Each document `repeat` times; copy k > 0 has its word at a k-dependent position replaced."""
    out = []
    for text in docs:
        tokens = text.split(" ")
        for k in range(repeat):
            copy = list(tokens)
            if k:
                copy[(k * 7919) % len(copy)] = f"copy{k}"
            out.append(" ".join(copy))
    return out


def datasketch_minhashes(texts: list[str], config: MinHashConfig) -> list:
    import datasketch

    sketches = []
    for text in texts:
        m = datasketch.MinHash(num_perm=config.num_perm, seed=config.seed, scheme=config.scheme)
        for s in shingles(text, config.n_grams):
            m.update(s)
        sketches.append(m)
    return sketches


def our_clusters(sigs: np.ndarray, config: MinHashConfig) -> pl.DataFrame:
    hashes = band_hashes(sigs, config)
    keys = np.arange(len(sigs), dtype=np.int64)
    return cluster(lambda b: pl.DataFrame({"band_hash": hashes[:, b], "doc_key": keys}), config.bands)


def datasketch_clusters(sketches: list, config: MinHashConfig) -> dict[int, int]:
    """doc -> smallest doc of its cluster, for clusters of 2 or more: MinHashLSH candidates, union-found."""
    import datasketch

    lsh = datasketch.MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members = {x: find(x) for x in parent}
    sizes = np.bincount(list(members.values()), minlength=len(sketches))
    return {x: root for x, root in members.items() if sizes[root] > 1}


def run(repeat: int) -> list[dict]:
    config = MinHashConfig()
    docs = near_copies(english_docs(), repeat)
    print(f"{len(docs):,} documents ({len(docs) // repeat} English sample documents x {repeat})")
    hasher = MinHasher(config)
    sigs = hasher.signatures(docs)
    sketches = datasketch_minhashes(docs, config)
    assert np.array_equal(sigs, np.array([m.hashvalues for m in sketches], dtype=np.uint64)), "signatures differ"
    ours_members = dict(our_clusters(sigs, config).iter_rows())
    assert ours_members == datasketch_clusters(sketches, config), "clusters differ from datasketch MinHashLSH"
    print(f"identical signatures and clusters: {len(set(ours_members.values())):,} clusters, "
          f"{len(ours_members):,} documents in them")

    def ours_clustering() -> int:
        our_clusters(sigs, config)
        return len(docs)

    def datasketch_clustering() -> int:
        datasketch_clusters(sketches, config)
        return len(docs)

    rows = [
        compare("MinHash signatures", lambda: len(hasher.signatures(docs)),
                lambda: len(datasketch_minhashes(docs, config)), "datasketch MinHash.update per shingle"),
        compare("Clustering (LSH 14x8)", ours_clustering, datasketch_clustering,
                "datasketch MinHashLSH insert+query, union-find"),
    ]
    return rows


def synthetic_band(b: int, n_docs: int, dup_fraction: float = 0.05) -> pl.DataFrame:
    """Band b of n_docs documents: random hashes, and the first 5% are near-duplicates of a random other document
    that share each band with it with probability 1/2."""
    rng = np.random.default_rng(1000 + b)
    hashes = rng.integers(0, np.iinfo(np.uint64).max, n_docs, dtype=np.uint64, endpoint=True)
    n_dups = int(n_docs * dup_fraction)
    originals = np.random.default_rng(0).integers(n_dups, n_docs, n_dups)  # the same pairs in every band
    shared = rng.random(n_dups) < 0.5
    hashes[:n_dups][shared] = hashes[originals[shared]]
    return pl.DataFrame({"band_hash": hashes, "doc_key": np.arange(n_docs, dtype=np.int64)})


def _status_kib(field: str) -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))


def memory_child(n_docs: int, n_bands: int) -> dict:
    """Runs in a fresh process: peak RSS of cluster() above the process after imports and a warm-up.

    Reads VmHWM, not getrusage's maxrss, which a child started by subprocess inherits from its parent's peak.
    """
    cluster(lambda b: synthetic_band(b, 1000), 2)  # polars' thread pool and numpy's buffers exist before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    members = cluster(lambda b: synthetic_band(b, n_docs), n_bands)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {"bands": n_bands, "documents": n_docs, "peak_increase_mb": (peak - before) / 1024, "seconds": seconds,
            "documents_in_clusters": members.height}


def memory(n_docs: int) -> dict:
    results = []
    for n_bands in (14, 28):
        out = subprocess.run([sys.executable, "-m", "bench.bench_dedup", "--memory-child", str(n_bands), "--docs",
                              str(n_docs)], check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    one_band_mb = synthetic_band(0, n_docs).estimated_size() / 2**20
    for r in results:
        r["mb_per_million_docs"] = r["peak_increase_mb"] / n_docs * 1e6
        print(f"cluster() over {r['documents']:,} docs x {r['bands']} bands: peak RSS +{r['peak_increase_mb']:.0f} MB "
              f"({r['mb_per_million_docs']:.0f} MB per million docs; one band table = {one_band_mb:.0f} MB), "
              f"{r['seconds']:.1f} s, {r['documents_in_clusters']:,} docs in clusters")
    return {"runs": results, "one_band_table_mb": one_band_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="near-copies of each English sample document")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents of the synthetic memory run")
    parser.add_argument("--memory-child", type=int, metavar="BANDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.docs, args.memory_child)))
        return
    rows = run(args.repeat)
    save("dedup", rows, memory=memory(args.docs), repeat=args.repeat)


if __name__ == "__main__":
    main()
