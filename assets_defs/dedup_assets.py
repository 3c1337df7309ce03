"""MinHash dedup per crawl and Presidio PII removal: minhash_signatures -> duplicate_clusters -> deduplicated ->
clean_documents. Thin: the work is in pipeline.dedup_io, pipeline.minhash, pipeline.dedup and pipeline.pii."""

import warnings
from collections import Counter
from functools import lru_cache

import dagster as dg
import polars as pl

from assets_defs.automation import when_every_shard_ready, when_upstream_updated_and_checks_passed
from assets_defs.partitions import crawl_ranges, crawl_shards, crawls
from assets_defs.resources import PipelineConfig
from assets_defs.stage_asset import per_shard_asset, run_stage, shard_asset
from pipeline import dedup_io
from pipeline.documents import exclusions
from pipeline.pii import PiiRedactor, remaining_pii
from pipeline.stages import map_parts
from pipeline.storage import PartitionMissing

with warnings.catch_warnings():  # beta, and the mappings that say "every shard (or range) of this crawl"
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_CRAWL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="crawl")
    EVERY_SHARD = dg.MultiPartitionMapping({  # a range of a crawl reads every shard of that crawl
        "crawl": dg.DimensionPartitionMapping("crawl", dg.IdentityPartitionMapping()),
        "shard": dg.DimensionPartitionMapping("range", dg.AllPartitionMapping()),
    })


@per_shard_asset(
    "minhash_signatures",
    deps=["quality_filtered"],
    group_name="dedup",
    kinds={"datasketch", "parquet"},
    description="Word 5-gram MinHash signatures (14 bands x 8 rows), written one file per band, keyed by config.",
    automation_condition=when_upstream_updated_and_checks_passed,
)
def minhash_signatures(context, settings: PipelineConfig, crawl: str, shard: str) -> dg.MaterializeResult:
    store, config = settings.store(), settings.minhash_config()
    parts = (store.read_part("quality_filtered", crawl, shard, p) for p in store.parts("quality_filtered", crawl, shard))
    stats = dedup_io.write_signatures(store, crawl, shard, parts, config)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats["documents"],
            "config_key": stats["config_key"],
            "bands x rows": f"{config.bands} x {config.rows}",
            "path": dg.MetadataValue.path(store.uri(dedup_io.SIGNATURES, crawl, dedup_io.signature_dir(shard, config))),
        }
    )


def _over_crawl(settings: PipelineConfig, crawl: str, work):
    """work(store, crawl, its shards, the MinHash config); an unknown crawl or a missing upstream partition fails the
    step with its message."""
    try:
        return work(settings.store(), crawl, settings.registry().get(crawl).shard_keys, settings.minhash_config())
    except (KeyError, PartitionMissing) as e:
        raise dg.Failure(description=str(e.args[0] if isinstance(e, KeyError) else e)) from None


@dg.asset(
    deps=[dg.AssetDep("minhash_signatures", partition_mapping=EVERY_SHARD)],
    partitions_def=crawl_ranges,
    group_name="dedup",
    kinds={"numpy", "parquet"},
    description="Documents that share a band hash within one range of band hash values, as (doc_key, cluster) "
    "pairs: every shard's sorted band tables read by byte range, in spans that fit `dedup_memory_mb`.",
    automation_condition=when_every_shard_ready,
)
def duplicate_pairs(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    crawl, hash_range = keys["crawl"], keys["range"]
    stats = _over_crawl(settings, crawl, lambda *args: dedup_io.compute_pairs(*args, hash_range,
                                                                            settings.dedup_memory_mb))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats["pairs"],
            "band_rows_read": stats["rows"],
            "spans": stats["spans"],
            "largest_span_rows": stats["largest_span_rows"],
            "memory_mb": settings.dedup_memory_mb,
        }
    )


@dg.asset(
    deps=[dg.AssetDep("duplicate_pairs", partition_mapping=BY_CRAWL),
          dg.AssetDep("minhash_signatures", partition_mapping=BY_CRAWL)],
    partitions_def=crawls,
    group_name="dedup",
    kinds={"polars", "parquet"},
    description="Near-duplicate clusters of one crawl (FineWeb dedups per dump): the ranges' pairs joined on local "
    "disk within `dedup_memory_mb` (Large-Star/Small-Star); survivor = earliest date, then smallest id; one part a "
    "shard.",
    automation_condition=when_every_shard_ready,
)
def duplicate_clusters(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl = context.partition_key
    stats = _over_crawl(settings, crawl, lambda *args: dedup_io.compute_clusters(*args, settings.dedup_memory_mb))
    histogram = "\n".join(f"| {size} | {n} |" for size, n in stats["size_histogram"].items())
    examples = "\n".join(f"| {p['jaccard']} | {p['kept']} | {p['dropped']} |" for p in stats["examples"])
    return dg.MaterializeResult(
        metadata={
            "documents": stats["documents"],
            "clusters": stats["clusters"],
            "documents_removed": stats["removed"],
            "dagster/row_count": stats["documents_in_clusters"],
            "cluster_sizes": dg.MetadataValue.md("| size | clusters |\n|---:|---:|\n" + histogram if histogram else "none"),
            "example_pairs": dg.MetadataValue.md(
                "| est. Jaccard | kept | dropped |\n|---:|---|---|\n" + examples if examples else "none"
            ),
        }
    )


@shard_asset(
    "deduplicated",
    ["quality_filtered", dg.AssetDep("duplicate_clusters", partition_mapping=BY_CRAWL)],
    "Drops every cluster member but its survivor; each exclusion names the survivor's id in `detail`.",
)
def deduplicated(context, settings: PipelineConfig, crawl: str, shard: str) -> dg.MaterializeResult:
    store = settings.store()
    try:
        losers = dedup_io.duplicates_in_shard(store, crawl, shard)
        fingerprint = dedup_io.clusters_fingerprint(store, crawl)
    except PartitionMissing as e:
        raise dg.Failure(description=str(e)) from None

    def transform(df: pl.DataFrame):
        drop = df["id"].is_in(list(losers))
        dropped = [{"id": i, "url": u, "reason": "duplicate", "detail": losers[i]} for i, u in
                   zip(df.filter(drop)["id"], df.filter(drop)["url"])]
        return df.filter(~drop), exclusions(dropped, "deduplicated"), Counter()

    outputs = map_parts(store, "quality_filtered", crawl, shard, transform)
    return run_stage(context, settings, "deduplicated", crawl, shard, outputs, {"clusters": fingerprint})


@lru_cache(maxsize=2)
def _redactor(spacy_model: str | None, score_threshold: float) -> PiiRedactor:
    return PiiRedactor(spacy_model=spacy_model, score_threshold=score_threshold)


@shard_asset(
    "clean_documents",
    ["deduplicated"],
    "Presidio PII anonymization (e-mail, phone, public IP, card, SSN, IBAN) into typed placeholders; the final "
    "FineWeb-schema dataset.",
    extra_checks=[dg.AssetCheckSpec("no_pii_left", asset="clean_documents", blocking=True, partitions_def=crawl_shards,
                                   description="No default PII pattern matches.")],
)
def clean_documents(context, settings: PipelineConfig, crawl: str, shard: str) -> dg.MaterializeResult:
    redactor = _redactor(settings.pii_spacy_model, settings.pii_score_threshold)

    def transform(df: pl.DataFrame):
        texts, found = redactor.redact_batch(df["text"].to_list())
        clean = df.with_columns(pl.Series("text", texts, dtype=pl.String), pl.lit(None, dtype=pl.Int64).alias("token_count"))
        return clean, exclusions([], "clean_documents"), Counter({f"pii:{k}": v for k, v in found.items()})

    outputs = map_parts(settings.store(), "deduplicated", crawl, shard, transform)
    config = {"spacy_model": settings.pii_spacy_model, "score_threshold": settings.pii_score_threshold}
    return run_stage(context, settings, "clean_documents", crawl, shard, outputs, config, extra_checks=_no_pii_left)


def _no_pii_left(store, crawl: str, shard: str) -> list[dg.AssetCheckResult]:
    leaks = []
    for part in store.parts("clean_documents", crawl, shard):
        for doc_id, text in store.read_part("clean_documents", crawl, shard, part).select("id", "text").iter_rows():
            leaks += [(doc_id, kind, value) for kind, value in remaining_pii(text)]
    return [
        dg.AssetCheckResult(
            check_name="no_pii_left",
            passed=not leaks,
            metadata={"matches": len(leaks), "first": str(leaks[:5])},
        )
    ]


DEDUP_SHARD_ASSETS = [minhash_signatures]
RANGE_ASSETS = [duplicate_pairs]
CRAWL_ASSETS = [duplicate_clusters]
CLEAN_ASSETS = [deduplicated, clean_documents]
