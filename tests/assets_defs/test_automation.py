"""Declarative automation over real materializations: the sensor adds a crawl's shards, the project's automation
conditions request what follows, tick after tick, and blocking checks stop bad data where it fails."""

from __future__ import annotations

from collections import defaultdict

import dagster as dg

from assets_defs.definitions import defs
from assets_defs.graph import ALL_ASSETS, ASSET_ORDER
from assets_defs.partitions import crawl_shards, partition_key
from assets_defs.resources import PipelineConfig
from assets_defs.sensors import crawl_sensor
from conftest import html_page, write_warc

# a second text, unlike conftest's PROSE, so dedup keeps both shards' pages
KERNELS = (
    "A kernel schedules the processes of a computer and shares its memory between them. When a program asks for a "
    "file, the kernel finds the blocks on the disk, copies them into memory and hands them back. Drivers let the "
    "kernel talk to the network card, the keyboard and the screen, and each driver is written for one family of "
    "devices. Monolithic kernels keep drivers inside the kernel for speed, while microkernels run them as separate "
    "servers so that a crash in one driver does not bring the whole system down. Both designs have been used for "
    "decades, and engineers still argue about which one is easier to maintain over many years of changes."
)
# Presidio scores an IP address 0.6: at a threshold of 1.0 it stays, and the independent no_pii_left scan finds it
LEAKY = {"pii_score_threshold": 1.0}


def _crawl(tmp_path, prose) -> PipelineConfig:
    src = tmp_path / "src"
    src.mkdir()
    pages = [html_page("About Debian", [prose + " The mirror answers at 151.101.2.132 every day."]),
             html_page("Kernels", [KERNELS])]
    for i, page in enumerate(pages):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))
    return settings


def _register(instance, settings) -> None:
    """One crawl_sensor tick, and what the daemon does with its requests."""
    result = crawl_sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
    assert result.run_requests == []  # the sensor only adds partitions; automation requests the runs
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


class Ticks:
    """The automation sensor's evaluations, one after another on one cursor, over a real instance."""

    def __init__(self, instance):
        self.instance, self.cursor = instance, None

    def tick(self) -> dict[str, list]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested = {key.to_user_string(): sorted(result.get_requested_partitions(key), key=str)
                     for key in defs.resolve_asset_graph().get_all_asset_keys()}
        return {asset: keys for asset, keys in requested.items() if keys}

    def run(self, requested: dict[str, list], settings: PipelineConfig) -> list[bool]:
        """Materializes what a tick requested, one run per partition key (as the sensor groups them)."""
        by_key = defaultdict(list)
        for asset, keys in requested.items():
            for key in keys:
                by_key[key].append(asset)
        outcomes = []
        for key, names in by_key.items():
            assets = sorted((a for a in ALL_ASSETS if a.key.to_user_string() in names),
                            key=lambda a: ASSET_ORDER.index(a.key.to_user_string()))
            result = dg.materialize(assets, partition_key=key, instance=self.instance,
                                    resources={"settings": settings}, raise_on_error=False)
            outcomes.append(result.success)
        return outcomes


    def run_batches(self, requested: dict[str, list], settings: PipelineConfig) -> list[bool]:
        """Materializes what a tick requested as a backfill's batches: the assets asking for the same partitions go
        in one run over their range (a single partition as its own run)."""
        by_keys = defaultdict(list)
        for asset, keys in requested.items():
            by_keys[tuple(keys)].append(asset)
        outcomes = []
        for keys, names in by_keys.items():
            assets = sorted((a for a in ALL_ASSETS if a.key.to_user_string() in names),
                            key=lambda a: ASSET_ORDER.index(a.key.to_user_string()))
            if len(keys) == 1 or any(a.partitions_def != crawl_shards for a in assets):  # no BackfillPolicy there
                outcomes += self.run(dict.fromkeys(names, list(keys)), settings)
                continue
            result = dg.materialize(assets, instance=self.instance, resources={"settings": settings},
                                    tags=_range(str(keys[0]), str(keys[-1])), raise_on_error=False)
            outcomes.append(result.success)
        return outcomes


def _range(start: str, end: str) -> dict[str, str]:
    """The tags of a run over a partition range, as a BackfillPolicy batch is launched."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def _shards(keys) -> list[str]:
    return sorted(str(k).split("|")[-1] for k in keys)


def test_a_new_crawl_flows_by_automation_and_a_failing_blocking_check_holds_it(tmp_path, dagster_instance, prose,
                                                                             monkeypatch):
    settings = _crawl(tmp_path, prose)
    monkeypatch.setenv("CRAWL2CHAT_DATA_ROOT", settings.data_root)  # where the Definitions find the crawls
    ticks = Ticks(dagster_instance)
    assert ticks.tick() == {}, "nothing before the sensor adds partitions"
    _register(dagster_instance, settings)
    # another crawl's third shard: shard numbers are shared, so web x 00002 is a partition that names no file
    dagster_instance.add_dynamic_partitions("shards", ["00002"])

    # 1. a new shard: its ingest chain to minhash_signatures, both shards, nothing that needs the whole crawl
    first = ticks.tick()
    ingest = ["warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
              "minhash_signatures"]
    assert sorted(first) == sorted(ingest), first
    assert all(_shards(first[a]) == ["00000", "00001"] for a in ingest)
    assert all(ticks.run(first, settings))

    # 2. the crawl's dedup once every shard has signatures, then each shard's clean run; the clean run leaves an IP
    #    address (LEAKY), so clean_documents' blocking no_pii_left check fails on shard 00000
    seen, failed_runs = [], 0
    while requested := ticks.tick():
        seen += list(requested)
        failed_runs += ticks.run(requested, PipelineConfig(**{**settings.model_dump(), **LEAKY})).count(False)
        assert len(seen) < 12, seen
    assert "duplicate_clusters" in seen and {"deduplicated", "clean_documents"} <= set(seen)
    assert seen.index("duplicate_clusters") < seen.index("deduplicated")
    assert "tokenizer" not in seen and "token_shards" not in seen, "a failed blocking check holds the tokenizer"
    assert failed_runs == 1
    history = dagster_instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("clean_documents"), "no_pii_left"), limit=5)
    statuses = sorted((r.partition, r.status.value) for r in history)
    assert statuses == [("web|00000", "FAILED"), ("web|00001", "SUCCEEDED")]
    assert ticks.tick() == {}, "a failed run is not retried on its own"

    # 3. a person fixes the setting and reruns the shard: the tokenizer, then every shard's tokens, then nothing
    assert ticks.run({"clean_documents": [partition_key("web", "00000")]}, settings) == [True]
    assert ticks.tick() == {"tokenizer": [None]}
    assert all(ticks.run({"tokenizer": [None]}, settings))
    tokens = ticks.tick()
    assert list(tokens) == ["token_shards"] and _shards(tokens["token_shards"]) == ["00000", "00001"]
    assert all(ticks.run(tokens, settings))
    assert ticks.tick() == {}, "everything is up to date: nothing more, and no training"

    # 4. an upstream partition rematerialized: what reads it is requested again, for that shard only
    assert ticks.run({"quality_filtered": [partition_key("web", "00001")]}, settings) == [True]
    again = ticks.tick()  # the shard's stages after it, as one run; the crawl's dedup once its signatures land
    assert sorted(again) == ["clean_documents", "deduplicated", "minhash_signatures", "token_shards"], again
    assert all(_shards(keys) == ["00001"] for keys in again.values())


def test_a_failing_blocking_check_skips_the_next_asset_in_the_same_run(tmp_path, dagster_instance, chat_root,
                                                                       two_tokenizers, prose):
    """clean_documents -> token_shards in one run: no_pii_left fails, so token_shards never starts; with the PII
    setting fixed, the same run makes both."""
    import polars as pl

    from assets_defs.dedup_assets import clean_documents
    from assets_defs.partitions import register_partitions
    from assets_defs.token_assets import token_shards
    from pipeline import token_io
    from pipeline.documents import DOC_SCHEMA, exclusions
    from pipeline.stages import PartOutput, write_partition

    root, _ = chat_root(tmp_path / "data", two_tokenizers[0])  # a committed tokenizer, as token_shards reads it
    settings = PipelineConfig(data_root=root)
    text = prose + " The mirror answers at 151.101.2.132 every day."
    doc = pl.DataFrame([{"text": text, "id": "d0", "dump": "web", "url": "https://a.org/0", "date": "2024-01-01",
                         "file_path": "f0.warc.gz", "language": "en", "language_score": 0.99}], schema=DOC_SCHEMA)
    write_partition(settings.store(), "deduplicated", "web", "00000",
                    iter([PartOutput("part-00000", doc, exclusions([], "deduplicated"), 1, len(text))]), {}, DOC_SCHEMA)
    register_partitions(dagster_instance, "web", ["00000"])
    key = partition_key("web", "00000")

    def run(config: PipelineConfig) -> dg.ExecuteInProcessResult:
        return dg.materialize([clean_documents, token_shards], partition_key=key, instance=dagster_instance,
                              resources={"settings": config}, raise_on_error=False)

    leaky = run(PipelineConfig(**{**settings.model_dump(), **LEAKY}))
    assert not leaky.success
    (check,) = [c for c in leaky.get_asset_check_evaluations() if c.check_name == "no_pii_left"]
    assert not check.passed and check.metadata["matches"].value == 1
    started = [e.step_key for e in leaky.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert started == ["clean_documents"]  # the materialization is recorded, with its failed check, and stops there
    assert len(leaky.asset_materializations_for_node("clean_documents")) == 1
    assert leaky.asset_materializations_for_node("token_shards") == []
    assert not settings.store().committed(token_io.TOKENS, "web", "00000")

    fixed = run(settings)
    assert fixed.success and len(fixed.asset_materializations_for_node("token_shards")) == 1
    assert settings.store().committed(token_io.TOKENS, "web", "00000")


def test_the_definitions_automate_the_data_graph_and_leave_training_manual():
    graph = defs.resolve_asset_graph()
    labels = {key.to_user_string(): graph.get(key).automation_condition.get_label()
              for key in graph.get_all_asset_keys() if graph.get(key).automation_condition is not None}
    assert labels["warc_records"] == "on_new_shard"
    assert labels["duplicate_clusters"] == "when_every_shard_ready"
    assert labels["clean_documents"] == labels["token_shards"] == "when_upstream_updated_and_checks_passed"
    assert labels["tokenizer"] == "once_when_every_shard_ready"
    assert not {"base_model", "sft_model", "rl_model", "reward_model", "rlhf_model"} & set(labels)
    assert graph.get(dg.AssetKey("warc_records")).backfill_policy is None  # a run a shard: CRAWL2CHAT_SHARDS_PER_RUN=1
    for sensor in ("crawl_sensor", "automation_sensor"):
        assert defs.resolve_sensor_def(sensor).default_status == dg.DefaultSensorStatus.STOPPED
    schedule = defs.resolve_schedule_def("relist_crawls_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED and schedule.job_name == "relist_crawls_job"
    blocking = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys if graph.get(k).blocking}
    assert {("clean_documents", "no_pii_left"), ("quality_filtered", "schema"), ("base_model", "loss_finite"),
            ("base_model", "beats_unigram"), ("sft_model", "learned_the_format"),
            ("rl_model", "no_worse_than_sft")} <= blocking
    assert ("base_model", "still_improving") not in blocking  # a plateau is worth a look, not a stop


def test_the_automation_sensor_requests_a_new_shards_stages_as_one_run(tmp_path, dagster_instance, monkeypatch,
                                                                       good_page):
    """The sensor of the Definitions, as the code server evaluates it: one run a shard, its six ingest stages."""
    from assets_defs.automation import automation_sensor

    src = tmp_path / "src"
    src.mkdir()
    write_warc(src / "f0.warc.gz", [{"url": "https://a.org/0", "body": good_page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))
    monkeypatch.setenv("CRAWL2CHAT_DATA_ROOT", settings.data_root)
    _register(dagster_instance, settings)

    context = dg.build_sensor_context(instance=dagster_instance, repository_def=defs.get_repository_def())
    (request,) = automation_sensor(context).run_requests
    assert request.partition_key == "web|00000"
    assert sorted(k.to_user_string() for k in request.asset_selection) == sorted(
        ["warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
         "minhash_signatures"])


def test_a_batch_of_shards_flows_by_automation_with_each_shards_checks_under_its_partition(tmp_path, dagster_instance,
                                                                                         prose, monkeypatch):
    """The first test's crawl as a backfill with CRAWL2CHAT_SHARDS_PER_RUN > 1 runs it: one run over the partition
    range of the shards a tick asks for. Each shard's checks land under its partition, targeting its new
    materialization, so automation sees them pass, and a check failed on one shard holds that shard alone."""
    settings = _crawl(tmp_path, prose)
    monkeypatch.setenv("CRAWL2CHAT_DATA_ROOT", settings.data_root)
    _register(dagster_instance, settings)
    dagster_instance.add_dynamic_partitions("shards", ["00002"])  # another crawl's shard, as above
    ticks = Ticks(dagster_instance)

    first = ticks.tick()
    assert ticks.run_batches(first, settings) == [True]  # the six ingest stages of both shards: one run
    check = dg.AssetCheckKey(dg.AssetKey("quality_filtered"), "schema")
    infos = dagster_instance.event_log_storage.get_asset_check_partition_info([check])
    by_partition = {i.partition_key: i for i in infos}
    assert {"web|00000", "web|00001"} <= set(by_partition)
    assert all(by_partition[p].is_current and by_partition[p].latest_execution_status.value == "SUCCEEDED"
               for p in ("web|00000", "web|00001"))
    store = settings.store()
    for shard in ("00000", "00001"):  # each shard's own figures, as an observation of its partition
        (observed,) = dagster_instance.fetch_observations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("quality_filtered"), asset_partitions=[f"web|{shard}"]), limit=1).records
        rows = observed.event_log_entry.asset_observation.metadata["rows_out"].value
        assert rows == store.read("quality_filtered", "web", shard).height == 1

    # the crawl's dedup, then both shards' clean batch; LEAKY leaves an IP address in shard 00000
    seen, failed_runs = [], 0
    while requested := ticks.tick():
        seen += list(requested)
        failed_runs += ticks.run_batches(requested, PipelineConfig(**{**settings.model_dump(), **LEAKY})).count(False)
        assert len(seen) < 12, seen
    assert sorted(seen) == ["clean_documents", "deduplicated", "duplicate_clusters", "duplicate_pairs"], seen  # once
    assert seen.index("duplicate_clusters") < seen.index("deduplicated")
    assert failed_runs == 1 and "tokenizer" not in seen
    history = dagster_instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("clean_documents"), "no_pii_left"), limit=5)
    statuses = sorted((r.partition or "", r.status.value) for r in history)  # "": the batch's check over both
    assert statuses == [("", "FAILED"), ("web|00000", "FAILED"), ("web|00001", "SUCCEEDED")]

    # fixed and rerun in a batch of both: the tokenizer follows, as after single-shard runs
    assert ticks.run_batches({"clean_documents": [partition_key("web", "00000"), partition_key("web", "00001")]},
                             settings) == [True]
    assert ticks.tick() == {"tokenizer": [None]}


def test_a_batch_naming_a_shard_its_crawl_does_not_have_fails_before_any_work(tmp_path, dagster_instance, prose):
    from assets_defs.data_assets import warc_records

    settings = _crawl(tmp_path, prose)
    _register(dagster_instance, settings)
    dagster_instance.add_dynamic_partitions("shards", ["00002"])
    result = dg.materialize([warc_records], instance=dagster_instance, resources={"settings": settings},
                            tags=_range("web|00001", "web|00002"), raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "name a shard their crawl does not have" in str(failure.step_failure_data.user_failure_data.description)
    assert "web|00002" in str(failure.step_failure_data.user_failure_data.description)
    assert not settings.store().committed("warc_records", "web", "00001"), "no work before the failure"
