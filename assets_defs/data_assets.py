"""Shard-level data assets, WARC -> quality-filtered text. Each calls into pipeline/ and reports what it did."""

import base64
from collections import Counter

import dagster as dg
import polars as pl

from assets_defs.partitions import crawl_and_shard, crawl_shards
from assets_defs.resources import PipelineConfig
from pipeline import extract, langid, warc
from pipeline.documents import DOC_SCHEMA, RECORD_SCHEMA, exclusions
from pipeline.filters.base import apply_filters
from pipeline.filters.quality import default_quality_filters
from pipeline.funnel import DATA_STAGES, funnel, funnel_markdown, funnel_png
from pipeline.stages import StageStats, map_parts, write_partition
from pipeline.url_filter import URLFilter

SCHEMAS = {
    "warc_records": RECORD_SCHEMA,
    "url_filtered": RECORD_SCHEMA,
    "extracted_text": DOC_SCHEMA,
    "language_filtered": DOC_SCHEMA,
    "quality_filtered": DOC_SCHEMA,
}


def _checks(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("schema", asset=asset, description="Committed parts have the stage's columns and types."),
        dg.AssetCheckSpec(
            "removal_fraction_in_band", asset=asset, description="The fraction of rows removed is inside the band."
        ),
    ]


def _shard_asset(name: str, deps: list[str], description: str):
    return dg.asset(
        name=name,
        deps=deps,
        partitions_def=crawl_shards,
        check_specs=_checks(name),
        group_name="data",
        description=description,
        kinds={"polars", "parquet"},
    )


def _run_stage(context, settings: PipelineConfig, stage: str, outputs, stage_config: dict) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    store = settings.store()
    stats = write_partition(store, stage, crawl, shard, outputs, stage_config, SCHEMAS[stage])
    context.log.info(f"{stage} {crawl}/{shard}: {stats.rows_in} -> {stats.rows_out} rows; drops {dict(stats.drops)}")
    metadata = _metadata(store, stats, crawl, shard)
    if stage == DATA_STAGES[-1]:
        rows = funnel(store, crawl, [shard], DATA_STAGES)
        png = base64.b64encode(funnel_png(rows, f"{crawl}/{shard}")).decode()
        metadata["funnel"] = dg.MetadataValue.md(funnel_markdown(rows))
        metadata["funnel_chart"] = dg.MetadataValue.md(f"![funnel](data:image/png;base64,{png})")
    return dg.MaterializeResult(metadata=metadata, check_results=_check_results(store, stats, settings, crawl, shard))


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


def _files(settings: PipelineConfig, crawl: str, shard: str) -> list[str]:
    try:
        return settings.registry().get(crawl).files(shard)
    except KeyError as e:
        raise dg.Failure(description=str(e.args[0])) from None


@_shard_asset("warc_records", [], "HTML response records read from the shard's WARC files (fastwarc).")
def warc_records(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    files = _files(settings, crawl, shard)
    outputs = warc.warc_parts(files, options_for=settings.storage_options, max_record_bytes=settings.max_record_bytes)
    return _run_stage(context, settings, "warc_records", outputs, {"files": files, "max_record_bytes": settings.max_record_bytes})


@_shard_asset("url_filtered", ["warc_records"], "Drops blocklisted domains and URLs with banned words (FineWeb).")
def url_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    url_filter = URLFilter.from_config(list_dir=settings.url_blocklist_dir, soft_word_threshold=settings.soft_word_threshold)

    def transform(df: pl.DataFrame):
        reasons = url_filter.filter_urls(df["url"].to_list())
        keep = pl.Series([r is None for r in reasons], dtype=pl.Boolean)
        dropped = [{"id": i, "url": u, "reason": r} for i, u, r in zip(df["id"], df["url"], reasons) if r is not None]
        return df.filter(keep), exclusions(dropped, "url_filtered"), Counter()

    outputs = map_parts(settings.store(), "warc_records", crawl, shard, transform)
    stage_config = {"lists": url_filter.describe(), "soft_word_threshold": settings.soft_word_threshold}
    return _run_stage(context, settings, "url_filtered", outputs, stage_config)


@_shard_asset("extracted_text", ["url_filtered"], "Main text of each page (resiliparse, or trafilatura).")
def extracted_text(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    outputs = map_parts(
        settings.store(), "url_filtered", crawl, shard, lambda df: extract.extract_records(df, crawl, settings.extractor)
    )
    return _run_stage(context, settings, "extracted_text", outputs, {"extractor": settings.extractor})


@_shard_asset("language_filtered", ["extracted_text"], "fastText lid.176 language ID; keeps configured languages.")
def language_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    outputs = map_parts(
        settings.store(),
        "extracted_text",
        crawl,
        shard,
        lambda df: langid.filter_languages(df, settings.languages, settings.language_threshold),
    )
    stage_config = {"languages": settings.languages, "threshold": settings.language_threshold, "model": "lid.176.ftz"}
    return _run_stage(context, settings, "language_filtered", outputs, stage_config)


@_shard_asset("quality_filtered", ["language_filtered"], "Gopher repetition and quality, C4 and FineWeb rules.")
def quality_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    filters = default_quality_filters()

    def transform(df: pl.DataFrame):
        kept, dropped = apply_filters(df, filters, "quality_filtered")
        return kept, dropped, Counter()

    outputs = map_parts(settings.store(), "language_filtered", crawl, shard, transform)
    return _run_stage(context, settings, "quality_filtered", outputs, {"filters": [repr(f) for f in filters]})


DATA_ASSETS = [warc_records, url_filtered, extracted_text, language_filtered, quality_filtered]
