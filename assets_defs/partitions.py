"""Partitions: crawl x shard for shard-level assets (both dimensions dynamic, filled by `crawl add` and a sensor), and
crawl x range for duplicate_pairs (ranges of band hash values, static: pipeline.dedup_io.range_keys)."""

from __future__ import annotations

import dagster as dg

from pipeline.dedup_io import range_keys

crawls = dg.DynamicPartitionsDefinition(name="crawls")
shards = dg.DynamicPartitionsDefinition(name="shards")
crawl_shards = dg.MultiPartitionsDefinition({"crawl": crawls, "shard": shards})
hash_ranges = dg.StaticPartitionsDefinition(range_keys())
crawl_ranges = dg.MultiPartitionsDefinition({"crawl": crawls, "range": hash_ranges})


def partition_key(crawl: str, shard: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"crawl": crawl, "shard": shard})


def range_key(crawl: str, hash_range: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"crawl": crawl, "range": hash_range})


def crawl_and_shard(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["crawl"], keys["shard"]


def register_partitions(instance: dg.DagsterInstance, crawl: str, shard_keys: list[str]) -> None:
    """Adds a crawl and its shards to the instance's dynamic partitions (idempotent)."""
    if not instance.has_dynamic_partition(crawls.name, crawl):
        instance.add_dynamic_partitions(crawls.name, [crawl])
    known = set(instance.get_dynamic_partitions(shards.name))
    new = [s for s in shard_keys if s not in known]
    if new:
        instance.add_dynamic_partitions(shards.name, new)
