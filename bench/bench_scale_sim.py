"""A simulated dump: many partitions of the sample through the graph on P worker processes, against the scale plan.

    .venv/bin/python -m bench.bench_scale_sim [--copies 4] [--workers 2]

The sample's 8 WARC files copied `--copies` times make a crawl of 8 x copies one-file shards (the copies are exact
duplicates, so dedup has work). Each partition's run is its own `dg.materialize` in a pool of `--workers` processes,
as pods of a backfill would be: ingest (warc_records..minhash_signatures) per shard, duplicate_pairs per range,
duplicate_clusters, then deduplicated and clean_documents per shard. The plan's model (bench/scale_plan.py: documents
into each stage / its per-core rate) is applied to this run's own funnel and compared with the measured
worker-seconds (wall x workers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import OUT, machine
from bench.scale_plan import RATES, core_seconds

_STATE: dict = {}


def _init(data: str) -> None:
    import dagster as dg

    from assets_defs.partitions import register_partitions
    from assets_defs.resources import PipelineConfig

    settings = PipelineConfig(data_root=data)
    crawl = settings.registry().get("sim")
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, crawl.name, crawl.shard_keys)
    _STATE.update(settings=settings, instance=instance)


def _run(job: tuple[str, dict | str | None]) -> float:
    import dagster as dg

    from assets_defs.graph import PHASES

    name, key = job
    phase = next(p for p in PHASES if p.job_name == name)
    if isinstance(key, dict):
        key = dg.MultiPartitionKey(key)
    start = time.perf_counter()
    result = dg.materialize(phase.assets, partition_key=key, instance=_STATE["instance"],
                            resources={"settings": _STATE["settings"]}, raise_on_error=False,
                            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    if not result.success:
        raise RuntimeError(f"{name} {key} failed")
    return time.perf_counter() - start


def main() -> None:
    from assets_defs.resources import PipelineConfig
    from pipeline.dedup_io import range_keys
    from pipeline.funnel import FUNNEL_STAGES, funnel
    from pipeline.sources import SAMPLE_SOURCE, resolve_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files-per-shard", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crawl2chat-sim-"))
    source = root / "warc"
    source.mkdir()
    for c in range(args.copies):
        for f in sorted(Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz")):
            shutil.copy(f, source / f"copy{c}-{f.name}")
    settings = PipelineConfig(data_root=str(root / "data"))
    crawl, _ = settings.registry().add("sim", str(source), files_per_shard=args.files_per_shard)
    shards = crawl.shard_keys
    phases = [
        ("ingest_job", [{"crawl": "sim", "shard": s} for s in shards]),
        ("pairs_job", [{"crawl": "sim", "range": r} for r in range_keys()]),
        ("cluster_job", ["sim"]),
        ("clean_job", [{"crawl": "sim", "shard": s} for s in shards]),
    ]
    walls, run_seconds = {}, {}
    pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init, initargs=(str(root / "data"),))
    try:
        for name, keys in phases:
            start = time.perf_counter()
            run_seconds[name] = sum(pool.map(_run, [(name, k) for k in keys], chunksize=1))
            walls[name] = time.perf_counter() - start
            print(f"{name}: {len(keys)} runs, {walls[name]:.1f} s wall, {run_seconds[name]:.1f} run-seconds",
                  flush=True)
    finally:
        pool.close()
        pool.join()
    store = settings.store()
    rows = {r.stage: r for r in funnel(store, "sim", shards, FUNNEL_STAGES)}
    documents = {stage: rows[stage].rows_in for stage in RATES if stage in rows}
    documents["warc_records"] = rows["warc_records"].rows_out  # the reading rate counts the HTML responses kept
    documents["minhash_signatures"] = rows["deduplicated"].rows_in  # what quality_filtered kept
    model = core_seconds(documents)
    measured = sum(walls.values()) * args.workers
    in_runs = sum(run_seconds.values())
    result = {
        "machine": machine(), "shards": len(shards), "files_per_shard": args.files_per_shard,
        "workers": args.workers, "documents": documents,
        "model_core_seconds": model, "model_total": sum(model.values()), "wall": walls,
        "run_seconds": run_seconds, "worker_seconds": measured, "rates": RATES,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"scale_sim_{len(shards)}x{args.files_per_shard}.json").write_text(json.dumps(result, indent=1))
    print(f"{len(shards)} shards, {documents['warc_records']:,} pages, {args.workers} workers: "
          f"{sum(walls.values()):.0f} s "
          f"wall = {measured:.0f} worker-seconds ({in_runs:.0f} inside runs); the plan's model predicts "
          f"{sum(model.values()):.0f} core-seconds of stage work: measured / model = "
          f"{measured / sum(model.values()):.2f}")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
