"""What every shard-level stage asset shares: the decorator, the run, its metadata and its checks."""

import base64

import dagster as dg

from assets_defs.automation import on_new_shard, when_upstream_updated_and_checks_passed
from assets_defs.partitions import crawl_and_shard, crawl_shards
from assets_defs.resources import PipelineConfig
from pipeline.documents import CLEAN_SCHEMA, DOC_SCHEMA, RECORD_SCHEMA
from pipeline.funnel import FUNNEL_STAGES, funnel, funnel_markdown, funnel_png
from pipeline.stages import StageStats, write_partition

# the ends of the filtering chain and of the data side carry the shard's funnel so far, as a table and a chart
FUNNEL_ENDS = ("quality_filtered", "clean_documents")
SCHEMAS = {
    "warc_records": RECORD_SCHEMA,
    "url_filtered": RECORD_SCHEMA,
    "extracted_text": DOC_SCHEMA,
    "language_filtered": DOC_SCHEMA,
    "quality_filtered": DOC_SCHEMA,
    "deduplicated": DOC_SCHEMA,
    "clean_documents": CLEAN_SCHEMA,
}


def stage_checks(asset: str) -> list[dg.AssetCheckSpec]:
    """Checked per crawl x shard; a wrong schema is blocking: the next stage neither runs in the same run nor is
    requested by automation for that shard."""
    return [
        dg.AssetCheckSpec("schema", asset=asset, description="Committed parts have the stage's columns and types.",
                          blocking=True, partitions_def=crawl_shards),
        dg.AssetCheckSpec(
            "removal_fraction_in_band", asset=asset, description="The fraction of rows removed is inside the band.",
            partitions_def=crawl_shards,
        ),
    ]


READ_POOL = "commoncrawl"  # the steps that read a crawl's WARC files; S3 throttles a bucket's readers (SlowDown)


def shard_asset(name: str, deps: list, description: str, extra_checks: list[dg.AssetCheckSpec] = (),
                pool: str | None = None):
    """A shard stage's asset; `pool`: the Dagster concurrency pool its step takes a slot of, across all runs (set
    its limit with `dagster instance concurrency set POOL N`, or concurrency.pools.default_limit in dagster.yaml).
    A stage with no upstream asset reads the crawl's files and materializes when the sensor adds its shard; the
    others when their upstream partition is newer and its blocking checks passed (assets_defs/automation.py)."""
    return dg.asset(
        name=name,
        deps=deps,
        partitions_def=crawl_shards,
        check_specs=[*stage_checks(name), *extra_checks],
        group_name="data",
        description=description,
        kinds={"polars", "parquet"},
        pool=pool,
        automation_condition=when_upstream_updated_and_checks_passed if deps else on_new_shard,
    )


def run_stage(
    context, settings: PipelineConfig, stage: str, outputs, stage_config: dict, extra_checks=None
) -> dg.MaterializeResult:
    """Writes the stage's partition; `extra_checks(store, crawl, shard)` adds check results of the asset's own."""
    crawl, shard = crawl_and_shard(context)
    store = settings.store()
    stats = write_partition(store, stage, crawl, shard, outputs, stage_config, SCHEMAS[stage])
    context.log.info(f"{stage} {crawl}/{shard}: {stats.rows_in} -> {stats.rows_out} rows; drops {dict(stats.drops)}")
    metadata = _metadata(store, stats, crawl, shard)
    if stage in FUNNEL_ENDS:
        rows = funnel(store, crawl, [shard], FUNNEL_STAGES[: FUNNEL_STAGES.index(stage) + 1])
        png = base64.b64encode(funnel_png(rows, f"{crawl}/{shard}")).decode()
        metadata["funnel"] = dg.MetadataValue.md(funnel_markdown(rows))
        metadata["funnel_chart"] = dg.MetadataValue.md(f"![funnel](data:image/png;base64,{png})")
    checks = _check_results(store, stats, settings, crawl, shard)
    if extra_checks:
        checks += extra_checks(store, crawl, shard)
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def _metadata(store, stats: StageStats, crawl: str, shard: str) -> dict:
    drops = "\n".join(f"| {k} | {v} |" for k, v in stats.drops.most_common())
    preview = "\n".join(f"| {r['text'][:160].replace('|', ' ').replace(chr(10), ' ')} | {r['url']} |" for r in stats.preview)
    return {
        "dagster/row_count": stats.rows_out,
        "rows_in": stats.rows_in,
        "rows_out": stats.rows_out,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "removed_fraction": round(stats.removed_fraction, 4),
        "drops_by_reason": dg.MetadataValue.md("| reason | rows |\n|---|---:|\n" + drops if drops else "no drops"),
        "notes": dg.MetadataValue.json(dict(stats.notes)),
        "preview": dg.MetadataValue.md("| text | url |\n|---|---|\n" + preview if preview else "empty"),
        "kept_path": dg.MetadataValue.path(store.uri(stats.stage, crawl, shard)),
        "dropped_path": dg.MetadataValue.path(store.uri("dropped", stats.stage, crawl, shard)),
    }


def _check_results(store, stats: StageStats, settings: PipelineConfig, crawl: str, shard: str) -> list[dg.AssetCheckResult]:
    expected = SCHEMAS[stats.stage]
    first = store.parts(stats.stage, crawl, shard)[0]
    found = dict(store.read_part(stats.stage, crawl, shard, first).schema)
    low, high = settings.band(stats.stage)
    return [
        dg.AssetCheckResult(
            check_name="schema",
            passed=found == expected,
            metadata={"expected": str(expected), "found": str(found)},
        ),
        dg.AssetCheckResult(
            check_name="removal_fraction_in_band",
            passed=low <= stats.removed_fraction <= high,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"removed_fraction": round(stats.removed_fraction, 4), "band": f"[{low}, {high}]"},
        ),
    ]


def crawl_files(settings: PipelineConfig, crawl: str, shard: str) -> list[str]:
    try:
        return settings.registry().get(crawl).files(shard)
    except KeyError as e:
        raise dg.Failure(description=str(e.args[0])) from None
