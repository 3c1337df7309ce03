"""Partitions: crawl x shard for shard-level assets (both dimensions dynamic, filled by `crawl add` and a sensor), and
crawl x range for duplicate_pairs (ranges of band hash values, static: pipeline.dedup_io.range_keys)."""

from __future__ import annotations

import os

import dagster as dg

from pipeline.dedup_io import range_keys

crawls = dg.DynamicPartitionsDefinition(name="crawls")
shards = dg.DynamicPartitionsDefinition(name="shards")
crawl_shards = dg.MultiPartitionsDefinition({"crawl": crawls, "shard": shards})
hash_ranges = dg.StaticPartitionsDefinition(range_keys())
crawl_ranges = dg.MultiPartitionsDefinition({"crawl": crawls, "range": hash_ranges})


def _shards_per_run() -> int:
    """CRAWL2CHAT_SHARDS_PER_RUN: how many crawl x shard partitions a backfill's run takes (a BackfillPolicy)."""
    value = os.environ.get("CRAWL2CHAT_SHARDS_PER_RUN", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CRAWL2CHAT_SHARDS_PER_RUN must be a whole number from 1, got {value!r}")
    return int(value)


# A backfill (and automation_sensor, which launches one when it asks for several partitions) runs this many shards
# a run: assets_defs/stage_asset.py's each_shard records each one's metadata and checks under its own partition.
# 1, the default, is a run a shard: a shard of a dump is already 100 WARC files, hours on a core, and one pod a shard
# keeps every pod busy. Batch when shards are small (a folder's crawl is a file a shard) and a run's start, a pod's
# on Kubernetes, is a real share of its work.
SHARDS_PER_RUN = _shards_per_run()
SHARD_BATCHES = dg.BackfillPolicy.multi_run(SHARDS_PER_RUN) if SHARDS_PER_RUN > 1 else None


def partition_key(crawl: str, shard: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"crawl": crawl, "shard": shard})


def range_key(crawl: str, hash_range: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"crawl": crawl, "range": hash_range})


def crawl_and_shard(key: str) -> tuple[str, str]:
    keys = crawl_shards.get_partition_key_from_str(str(key)).keys_by_dimension
    return keys["crawl"], keys["shard"]


def register_partitions(instance: dg.DagsterInstance, crawl: str, shard_keys: list[str]) -> None:
    """Adds a crawl and its shards to the instance's dynamic partitions (idempotent)."""
    if not instance.has_dynamic_partition(crawls.name, crawl):
        instance.add_dynamic_partitions(crawls.name, [crawl])
    known = set(instance.get_dynamic_partitions(shards.name))
    new = [s for s in shard_keys if s not in known]
    if new:
        instance.add_dynamic_partitions(shards.name, new)
