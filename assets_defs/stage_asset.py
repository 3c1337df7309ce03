"""What every shard-level asset shares: the decorator, a run of one shard or a backfill's batch of them, and the
stage assets' metadata and checks."""

import base64
from collections.abc import Callable

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not in dagster's public API
    AssetCheckEvaluationTargetMaterializationData,
)

from assets_defs.automation import on_new_shard, when_upstream_updated_and_checks_passed
from assets_defs.partitions import SHARD_BATCHES, crawl_and_shard, crawl_shards
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


PerShard = Callable[[dg.AssetExecutionContext, PipelineConfig, str, str], dg.MaterializeResult]


def per_shard_asset(name: str, **asset_kwargs):
    """dg.asset over crawl x shard partitions, decorating `fn(context, settings, crawl, shard)` that materializes
    one shard; each_shard runs it for each shard the run covers."""

    def decorate(fn: PerShard) -> dg.AssetsDefinition:
        def body(context: dg.AssetExecutionContext, settings: PipelineConfig):
            yield from each_shard(context, settings, fn)

        body.__doc__ = fn.__doc__
        return dg.asset(name=name, partitions_def=crawl_shards, backfill_policy=SHARD_BATCHES, **asset_kwargs)(body)

    return decorate


def shard_asset(name: str, deps: list, description: str, extra_checks: list[dg.AssetCheckSpec] = (),
                pool: str | None = None):
    """A shard stage's asset; `pool`: the Dagster concurrency pool its step takes a slot of, across all runs (set
    its limit with `dagster instance concurrency set POOL N`, or concurrency.pools.default_limit in dagster.yaml).
    A stage with no upstream asset reads the crawl's files and materializes when the sensor adds its shard; the
    others when their upstream partition is newer and its blocking checks passed (assets_defs/automation.py)."""
    return per_shard_asset(
        name,
        deps=deps,
        check_specs=[*stage_checks(name), *extra_checks],
        group_name="data",
        description=description,
        kinds={"polars", "parquet"},
        pool=pool,
        automation_condition=when_upstream_updated_and_checks_passed if deps else on_new_shard,
    )


def each_shard(context: dg.AssetExecutionContext, settings: PipelineConfig, fn: PerShard):
    """A run of one partition yields its shard's result as it is. A backfill's batch (SHARDS_PER_RUN > 1) is a run
    over a partition range, for which Dagster records one materialization a partition with the run's metadata, and
    its checks with no partition at all (Dagster 1.13.27): automation would never see a shard's blocking checks pass.
    So after the range's result (each check passed only if it passed on every shard), each shard's own metadata
    goes on as an observation of its partition, and its checks as evaluations of its partition that target that
    partition's new materialization. A shard its crawl does not have fails the batch before any work."""
    if context.has_partition_key:
        yield fn(context, settings, *crawl_and_shard(context.partition_key))
        return
    keys = list(context.partition_keys)
    foreign = _not_shards_of_their_crawl(settings, keys)
    if foreign:
        raise dg.Failure(description=f"{len(foreign)} partition(s) of this run name a shard their crawl does not have "
                         f"(shard numbers are shared across crawls): {', '.join(map(str, foreign[:10]))}; backfill "
                         "each crawl's own shards")
    results = {}
    for key in keys:
        results[key] = fn(context, settings, *crawl_and_shard(key))
        context.log.info(f"{context.asset_key.to_user_string()} {key}: done, {len(results)} of {len(keys)} shards")
    by_check: dict[str, list] = {}
    for key, result in results.items():
        for check in result.check_results or ():
            by_check.setdefault(check.check_name, []).append((key, check))
    yield dg.MaterializeResult(metadata={"shards_in_run": len(keys), "first_shard": str(keys[0]),
                                         "last_shard": str(keys[-1])},
                               check_results=[_across_shards(name, checks) for name, checks in by_check.items()])
    specs = {spec.name: spec for spec in context.assets_def.check_specs}
    for key, result in results.items():
        (record,) = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[str(key)]), limit=1).records
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        yield dg.AssetObservation(asset_key=context.asset_key, partition=str(key), metadata=result.metadata)
        for check in result.check_results or ():
            yield dg.AssetCheckEvaluation(
                asset_key=context.asset_key, check_name=check.check_name, passed=check.passed, partition=str(key),
                metadata=check.metadata, severity=check.severity, description=check.description,
                blocking=specs[check.check_name].blocking, target_materialization_data=target)


def _not_shards_of_their_crawl(settings: PipelineConfig, keys: list[str]) -> list[str]:
    registry, shards_of = settings.registry(), {}
    for crawl in {crawl_and_shard(k)[0] for k in keys}:
        try:
            shards_of[crawl] = set(registry.get(crawl).shard_keys)
        except KeyError:
            shards_of[crawl] = set()
    return [k for k in keys if crawl_and_shard(k)[1] not in shards_of[crawl_and_shard(k)[0]]]


def _across_shards(name: str, checks: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    failed = [str(key) for key, check in checks if not check.passed]
    return dg.AssetCheckResult(check_name=name, passed=not failed, severity=checks[0][1].severity,
                               metadata={"shards": len(checks), "failed_shards": ", ".join(failed) or "none"})


def run_stage(context, settings: PipelineConfig, stage: str, crawl: str, shard: str, outputs, stage_config: dict,
              extra_checks=None) -> dg.MaterializeResult:
    """Writes the stage's partition; `extra_checks(store, crawl, shard)` adds check results of the asset's own."""
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
