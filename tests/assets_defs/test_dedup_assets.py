"""Per-crawl dedup as Dagster runs: clusters span a crawl's shards, a rerun after new shards recomputes that crawl
only, and signatures from another MinHash config are never mixed in."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from assets_defs.cli import materialize_crawl
from assets_defs.dedup_assets import duplicate_clusters
from assets_defs.graph import ASSET_ORDER
from assets_defs.partitions import register_partitions
from assets_defs.resources import PipelineConfig
from pipeline import dedup_io
from pipeline.sources import SAMPLE_SOURCE, resolve_source

NEAR_2 = [  # the planted near-duplicate group "near-2": the original in file 4, copies in files 6 and 7
    "https://docs.python.org/3.11/library/abc.html",
    "https://python-docs.example1.net/3.11/library/abc.html",
    "https://python-docs.example2.net/3.11/library/abc.html",
]


def _source(tmp_path, name: str, files: list[int]):
    folder = tmp_path / name
    folder.mkdir()
    for i in files:
        shutil.copy(f"{resolve_source(SAMPLE_SOURCE)}/sample-{i:05d}.warc.gz", folder)
    return folder


def _run(instance, settings, crawl_name):
    crawl = settings.registry().get(crawl_name)
    register_partitions(instance, crawl.name, crawl.shard_keys)
    assert materialize_crawl(instance, {"settings": settings}, crawl, ASSET_ORDER[: ASSET_ORDER.index("clean_documents") + 1]) == []
    return crawl


def _kept_urls(store, crawl):
    return {u for shard in crawl.shard_keys for u in store.read("deduplicated", crawl.name, shard)["url"]}


@pytest.mark.slow
def test_rerun_after_new_shards_recomputes_that_crawl_only(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    store, registry = settings.store(), settings.registry()
    web = _source(tmp_path, "web", [4, 6])
    registry.add("web", str(web))
    registry.add("other", str(_source(tmp_path, "other", [5])))
    crawl = _run(dagster_instance, settings, "web")
    other = _run(dagster_instance, settings, "other")
    assert NEAR_2[0] in _kept_urls(store, crawl) and NEAR_2[1] not in _kept_urls(store, crawl)
    before = store.manifest(dedup_io.CLUSTERS, "web", dedup_io.CRAWL_SHARD)
    other_before = store.manifest(dedup_io.CLUSTERS, "other", dedup_io.CRAWL_SHARD)

    shutil.copy(f"{resolve_source(SAMPLE_SOURCE)}/sample-00007.warc.gz", web)
    assert registry.discover("web") == ["00002"]
    crawl = _run(dagster_instance, settings, "web")
    after = store.manifest(dedup_io.CLUSTERS, "web", dedup_io.CRAWL_SHARD)
    assert after["inputs"] != before["inputs"] and after["shards"] == ["00000", "00001", "00002"]
    assert after["stats"]["removed"] == before["stats"]["removed"] + 1 + 0  # near-2's second copy
    kept = _kept_urls(store, crawl)
    assert NEAR_2[0] in kept and not {NEAR_2[1], NEAR_2[2]} & kept
    assert store.manifest(dedup_io.CLUSTERS, "other", dedup_io.CRAWL_SHARD) == other_before, "another crawl was touched"
    assert other.shard_keys == ["00000"]


@pytest.mark.slow
def test_signatures_are_keyed_by_config(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(_source(tmp_path, "web", [4, 6])))
    crawl = _run(dagster_instance, settings, "web")
    store = settings.store()

    other = PipelineConfig(data_root=str(tmp_path / "data"), minhash_bands=20, minhash_rows=5)
    assert other.minhash_config().key() != settings.minhash_config().key()
    result = dg.materialize(  # clusters under the new config, before any signature was made with it
        [duplicate_clusters], partition_key="web", instance=dagster_instance,
        resources={"settings": other}, raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "minhash_signatures" in failure.event_specific_data.error.message
    assert store.manifest(dedup_io.CLUSTERS, "web", dedup_io.CRAWL_SHARD)["config_hash"] == settings.minhash_config().key()

    _run(dagster_instance, other, "web")
    manifest = store.manifest(dedup_io.CLUSTERS, "web", dedup_io.CRAWL_SHARD)
    assert manifest["config_hash"] == other.minhash_config().key()
    assert NEAR_2[1] not in _kept_urls(store, crawl)
