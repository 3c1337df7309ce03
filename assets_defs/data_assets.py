"""Shard-level data assets, WARC -> quality-filtered text. Each calls into pipeline/ and reports what it did."""

from collections import Counter

import dagster as dg
import polars as pl

from assets_defs.resources import PipelineConfig
from assets_defs.stage_asset import READ_POOL, crawl_files, run_stage, shard_asset
from pipeline import extract, langid, warc
from pipeline.documents import exclusions
from pipeline.filters.base import apply_filters
from pipeline.filters.quality import default_quality_filters
from pipeline.stages import map_parts
from pipeline.url_filter import URLFilter

@shard_asset("warc_records", [], "HTML response records read from the shard's WARC files (fastwarc).", pool=READ_POOL)
def warc_records(context: dg.AssetExecutionContext, settings: PipelineConfig, crawl: str, shard: str):
    files = crawl_files(settings, crawl, shard)
    outputs = warc.warc_parts(files, options_for=settings.storage_options, max_record_bytes=settings.max_record_bytes)
    stage_config = {"files": files, "max_record_bytes": settings.max_record_bytes}
    return run_stage(context, settings, "warc_records", crawl, shard, outputs, stage_config)


@shard_asset("url_filtered", ["warc_records"], "Drops URLs by category: listed domains and URLs, banned words (FineWeb).")
def url_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig, crawl: str, shard: str):
    url_filter = URLFilter(
        settings.url_categories,
        lists=settings.url_lists,
        soft_word_threshold=settings.soft_word_threshold,
        storage_options=settings.storage_options(settings.url_lists) if settings.url_lists else None,
    )

    def transform(df: pl.DataFrame):
        reasons = url_filter.reasons(df["url"])
        dropped = df.select("id", "url").with_columns(reason=reasons).filter(pl.col("reason").is_not_null())
        return df.filter(reasons.is_null()), exclusions(dropped.to_dicts(), "url_filtered"), Counter()

    outputs = map_parts(settings.store(), "warc_records", crawl, shard, transform)
    stage_config = {"url_filter": url_filter.describe(), "url_lists": settings.url_lists}
    return run_stage(context, settings, "url_filtered", crawl, shard, outputs, stage_config)


@shard_asset("extracted_text", ["url_filtered"], "Main text of each page (resiliparse, or trafilatura).")
def extracted_text(context: dg.AssetExecutionContext, settings: PipelineConfig, crawl: str, shard: str):
    outputs = map_parts(
        settings.store(), "url_filtered", crawl, shard, lambda df: extract.extract_records(df, crawl, settings.extractor)
    )
    return run_stage(context, settings, "extracted_text", crawl, shard, outputs, {"extractor": settings.extractor})


@shard_asset("language_filtered", ["extracted_text"], "fastText lid.176 language ID; keeps configured languages.")
def language_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig, crawl: str, shard: str):
    outputs = map_parts(
        settings.store(),
        "extracted_text",
        crawl,
        shard,
        lambda df: langid.filter_languages(df, settings.languages, settings.language_threshold),
    )
    stage_config = {"languages": settings.languages, "threshold": settings.language_threshold, "model": "lid.176.ftz"}
    return run_stage(context, settings, "language_filtered", crawl, shard, outputs, stage_config)


@shard_asset("quality_filtered", ["language_filtered"], "Gopher repetition and quality, C4 and FineWeb rules.")
def quality_filtered(context: dg.AssetExecutionContext, settings: PipelineConfig, crawl: str, shard: str):
    filters = default_quality_filters(settings.gopher_alpha_ratio_counts_punctuation)

    def transform(df: pl.DataFrame):
        kept, dropped = apply_filters(df, filters, "quality_filtered")
        return kept, dropped, Counter()

    outputs = map_parts(settings.store(), "language_filtered", crawl, shard, transform)
    stage_config = {"filters": [repr(f) for f in filters]}
    return run_stage(context, settings, "quality_filtered", crawl, shard, outputs, stage_config)


DATA_ASSETS = [warc_records, url_filtered, extracted_text, language_filtered, quality_filtered]
