"""Real Dagster materializations of the data chain over a shard of the bundled sample."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from pydantic import ValidationError

from assets_defs.data_assets import DATA_ASSETS
from assets_defs.definitions import defs
from assets_defs.partitions import partition_key, register_partitions
from assets_defs.resources import PipelineConfig
from pipeline.sources import SAMPLE_SOURCE, resolve_source


def _planted():
    with open(f"{resolve_source(SAMPLE_SOURCE)}/PLANTED.json") as f:
        return json.load(f)["cases"]


def _materialize(settings, instance, crawl, shard):
    return dg.materialize(
        DATA_ASSETS, partition_key=partition_key(crawl, shard), instance=instance, resources={"settings": settings}
    )


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
        "minhash_signatures", "duplicate_pairs", "duplicate_clusters", "deduplicated", "clean_documents", "tokenizer",
        "token_shards",
        "base_model", "search_index", "knowledge_probe", "sft_conversations", "sft_model", "rl_model",
        "preference_rankings", "reward_model", "rlhf_model",
    }
    for job in ("ingest_job", "pairs_job", "cluster_job", "clean_job", "tokenizer_job", "tokens_job", "pretrain_job",
                "rlhf_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_sensor_def("crawl_sensor") is not None


def test_whole_chain_on_a_sample_shard(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    crawl, _ = settings.registry().add("sample", SAMPLE_SOURCE)
    register_partitions(dagster_instance, "sample", crawl.shard_keys)
    result = _materialize(settings, dagster_instance, "sample", "00001")
    assert result.success

    # every asset recorded a materialization with its funnel numbers, and its checks ran
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert set(mats) == {a.key.to_user_string() for a in DATA_ASSETS}
    meta = {k: mats[k].materialization.metadata for k in mats}
    assert meta["warc_records"]["rows_out"].value == meta["url_filtered"]["rows_in"].value
    assert meta["quality_filtered"]["rows_out"].value > 0
    assert "| warc_records |" in meta["quality_filtered"]["funnel"].value
    assert meta["quality_filtered"]["funnel_chart"].value.startswith("![funnel](data:image/png;base64,")
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 * len(DATA_ASSETS)
    assert all(c.passed for c in checks if c.check_name == "schema")

    # the planted cases of this shard end where PLANTED.json says
    store = settings.store()
    dropped = {
        stage: {r["url"]: r["reason"] for r in store.read(stage, "sample", "00001", dropped=True).iter_rows(named=True)}
        for stage in ("warc_records", "url_filtered", "quality_filtered")
    }
    planted = [c for c in _planted() if c["file"] == crawl.shards[1][0] and c["expect_stage"] in dropped]
    assert planted, "shard 00001 carries planted drops"
    for case in planted:
        assert case["url"] in dropped[case["expect_stage"]], case
        if case["expect_reason"]:
            assert dropped[case["expect_stage"]][case["url"]] == case["expect_reason"], case
    kept = store.read("quality_filtered", "sample", "00001")
    assert kept.columns == ["text", "id", "dump", "url", "date", "file_path", "language", "language_score"]
    assert set(kept["language"]) == {"en"} and kept["dump"].unique().to_list() == ["sample"]


def test_a_shard_the_crawl_does_not_have_fails_clearly(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    crawl, _ = settings.registry().add("sample", SAMPLE_SOURCE)
    register_partitions(dagster_instance, "sample", [*crawl.shard_keys, "00042"])
    result = dg.materialize(
        DATA_ASSETS[:1], partition_key=partition_key("sample", "00042"), instance=dagster_instance,
        resources={"settings": settings}, raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no shard '00042'" in str(failure.event_specific_data.error)


@pytest.mark.parametrize(
    "field,value",
    [("language_threshold", 1.5), ("languages", ["english!"]), ("max_record_bytes", 0), ("extractor", "bs4"),
     ("removal_bands", {"url_filtered": [0.5, 0.1]})],
)
def test_bad_config_fails_at_load_naming_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        PipelineConfig(**{field: value})
    assert field in str(info.value)
