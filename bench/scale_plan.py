"""The scale plan for one Common Crawl dump, from BENCHMARKS.md's per-core rates (infra/README.md explains it).

    .venv/bin/python -m bench.scale_plan [--files 90000] [--pages-per-file 35000] [--pods 450] [--core-hour-usd 0.04]

Every figure it prints is computed here from the constants below; change an assumption with its flag. The cost
model (core-seconds = documents into each stage / that stage's rate on one core) is checked against a real
parallel run of the graph by bench/bench_scale_sim.py.
"""

from __future__ import annotations

import argparse
import math

# docs/s on one core of the Intel Xeon (bench/BENCHMARKS.md, "Data stages" and "Dedup and PII"); the URL filter
# and dedup's drop step are ~free next to these
RATES = {
    "warc_records": 11_086,  # WARC reading (HTML responses)
    "extracted_text": 458,  # HTML -> main text (resiliparse_pruned)
    "language_filtered": 1_836,  # lid.176
    "quality_filtered": 181,  # Gopher rep + Gopher qual + C4 + FineWeb
    "minhash_signatures": 1_462,  # 5-gram MinHash, 112 permutations
    "clean_documents": 683,  # Presidio, 6 entities
}
# duplicate_pairs and the join at 100M synthetic documents (bench/bench_cluster_scale.py, BENCHMARKS.md, "Clustering
# at dump scale"): seconds a million band rows; pairs a clustered document, the join's seconds a million pairs (on
# disk, under a 1 GB budget: memory does not grow with the crawl) and its peak local disk a pair
PAIRS_S_PER_M_ROWS = 0.20
PAIRS_PER_CLUSTERED_DOC = 2.49
JOIN_S_PER_M_PAIRS = 1.5
JOIN_DISK_BYTES_PER_PAIR = 36
SURVIVOR_DISK_BYTES_PER_DOC = 120  # estimated, not measured: a member's doc_key, cluster, id and survivor's id
BANDS = 14
# measured / modelled core-seconds of a parallel run of the graph (bench/bench_scale_sim.py, 16 shards of 8 files,
# 2 workers): Dagster's runs, parquet and manifests, each process loading its models; it falls as shards grow
OVERHEAD = 1.84


def stage_documents(pages: float, english: float, quality_keep: float, dedup_keep: float) -> dict[str, float]:
    """Documents into each stage, for `pages` HTML responses."""
    extracted = pages * 0.97  # empty or failed extraction (~3%)
    into_quality = extracted * english
    into_minhash = into_quality * quality_keep
    return {
        "warc_records": pages,
        "extracted_text": pages,
        "language_filtered": extracted,
        "quality_filtered": into_quality,
        "minhash_signatures": into_minhash,
        "clean_documents": into_minhash * dedup_keep,
    }


def core_seconds(documents: dict[str, float]) -> dict[str, float]:
    return {stage: documents.get(stage, 0) / rate for stage, rate in RATES.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=90_000, help="WARC files in the dump")
    p.add_argument("--pages-per-file", type=int, default=35_000, help="HTML responses a WARC file (~3.1B a dump)")
    p.add_argument("--files-per-shard", type=int, default=100)
    p.add_argument("--english", type=float, default=0.45, help="share of pages lid.176 calls English")
    p.add_argument("--quality-keep", type=float, default=0.55, help="share of English pages the filters keep")
    p.add_argument("--dedup-keep", type=float, default=0.75, help="share of filtered documents dedup keeps")
    p.add_argument("--pods", type=int, default=450, help="one-core shard pods at once (the commoncrawl pool)")
    p.add_argument("--core-hour-usd", type=float, default=0.04, help="price of a core-hour (on-demand c7i ~0.04)")
    p.add_argument("--file-gb", type=float, default=1.1, help="compressed size of a WARC file")
    p.add_argument("--overhead", type=float, default=OVERHEAD, help="measured / modelled core-seconds")
    args = p.parse_args()

    pages = args.files * args.pages_per_file
    docs = stage_documents(pages, args.english, args.quality_keep, args.dedup_keep)
    seconds = {stage: s * args.overhead for stage, s in core_seconds(docs).items()}
    total_h = sum(seconds.values()) / 3600
    shards = math.ceil(args.files / args.files_per_shard)
    shard_h = sum(seconds.values()) / shards / 3600
    print(f"one dump: {args.files:,} WARC files, {pages / 1e9:.2f}B pages, {shards} shards of {args.files_per_shard}; "
          f"per-core rates x {args.overhead} (measured overhead)")
    print("| stage | documents in | core-hours | share |\n|---|---:|---:|---:|")
    for stage, s in seconds.items():
        print(f"| {stage} | {docs[stage] / 1e9:.2f}B | {s / 3600:,.0f} | {s / 3600 / total_h:.0%} |")
    waves = math.ceil(shards / args.pods)
    read_gbps = min(args.pods, shards) * args.files_per_shard * args.file_gb / (shard_h * 3600) * 8
    print(f"total {total_h:,.0f} core-hours (${total_h * args.core_hour_usd:,.0f} at ${args.core_hour_usd}/core-hour);"
          f" a shard {shard_h:.1f} h on one core; {args.pods} pods: {waves} wave(s), ~{waves * shard_h:.0f} h, "
          f"reading {read_gbps:.1f} Gbit/s from S3 together")
    for label, n in (("this dump's filtered documents", docs["minhash_signatures"]), ("3B documents", 3e9)):
        rows = n * BANDS
        pairs_h = rows / 1e6 * PAIRS_S_PER_M_ROWS / 3600
        spans = math.ceil(n / 16 * 64 / 2**30)
        clustered = n * (1 - args.dedup_keep) * 2  # the documents dedup drops, and about as many survivors
        pairs = clustered * PAIRS_PER_CLUSTERED_DOC
        join_h = pairs / 1e6 * JOIN_S_PER_M_PAIRS / 3600
        print(f"clustering {label} ({n / 1e9:.2f}B): {rows / 1e9:.1f}B band rows, {pairs_h:.1f} core-hours of "
              f"duplicate_pairs: 16 range pods of ~{pairs_h / 16 * 60:.0f} min, {spans} span(s) a range under 1 GB; "
              f"the join: {clustered / 1e6:,.0f}M clustered documents, {pairs / 1e9:.1f}B pairs, ~{join_h:.1f} h on "
              f"one pod under its 1 GB budget, ~{pairs * JOIN_DISK_BYTES_PER_PAIR / 2**30:.0f} GB of local disk "
              f"(then ~{clustered * SURVIVOR_DISK_BYTES_PER_DOC / 2**30:.0f} GB to choose survivors)")


if __name__ == "__main__":
    main()
