"""The crawl sensor: finds files that appeared, adds partitions, asks for each shard's ingest run once, then for
the crawl's clustering and the shards' clean runs as their inputs land."""

from __future__ import annotations

import json

import dagster as dg

from assets_defs.resources import PipelineConfig
from assets_defs.sensors import crawl_sensor
from conftest import html_page, write_warc


def _evaluate(instance, settings, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
    return crawl_sensor(context)


def test_sensor_adds_new_shards_with_a_cursor(tmp_path, dagster_instance, good_page):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))

    first = _evaluate(dagster_instance, settings, None)
    assert {r.job_name for r in first.run_requests} == {"ingest_job"}
    keys = sorted((r.partition_key.keys_by_dimension["crawl"], r.partition_key.keys_by_dimension["shard"]) for r in first.run_requests)
    assert keys == [("web", "00000"), ("web", "00001")]
    added = {req.partitions_def_name: list(req.partition_keys) for req in first.dynamic_partitions_requests}
    assert added == {"crawls": ["web"], "shards": ["00000", "00001"]}
    assert json.loads(first.cursor) == {"web": 2}

    for req in first.dynamic_partitions_requests:  # what the daemon does with the requests
        dagster_instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    write_warc(src / "f2.warc.gz", [{"url": "https://a.org/2", "body": good_page}])
    second = _evaluate(dagster_instance, settings, first.cursor)
    assert [r.partition_key.keys_by_dimension["shard"] for r in second.run_requests] == ["00002"]
    assert [list(r.partition_keys) for r in second.dynamic_partitions_requests] == [["00002"]]

    third = _evaluate(dagster_instance, settings, second.cursor)
    assert third.run_requests == [] and third.dynamic_partitions_requests == []


def test_sensor_moves_a_crawl_through_clustering_and_cleaning(tmp_path, dagster_instance, prose):
    from assets_defs.graph import PHASES

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": html_page("About Debian", [prose])}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))

    def run(job_name, partition_key):
        phase = next(p for p in PHASES if p.job_name == job_name)
        result = dg.materialize(phase.assets, partition_key=partition_key,
                                instance=dagster_instance, resources={"settings": settings})
        assert result.success

    first = _evaluate(dagster_instance, settings, None)
    for req in first.dynamic_partitions_requests:
        dagster_instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    run("ingest_job", first.run_requests[0].partition_key)
    assert [r.job_name for r in _evaluate(dagster_instance, settings, first.cursor).run_requests] == [], \
        "clustering waits for every shard"
    run("ingest_job", first.run_requests[1].partition_key)

    second = _evaluate(dagster_instance, settings, first.cursor)
    assert [(r.job_name, r.partition_key) for r in second.run_requests] == [("cluster_job", "web")]
    run("cluster_job", "web")

    third = _evaluate(dagster_instance, settings, second.cursor)
    assert sorted(r.job_name for r in third.run_requests) == ["clean_job", "clean_job"]
    for request in third.run_requests:
        run("clean_job", request.partition_key)
    # the two shards hold the same page: one survives
    store = settings.store()
    assert sum(store.read("deduplicated", "web", s).height for s in ("00000", "00001")) == 1
    fourth = _evaluate(dagster_instance, settings, third.cursor)  # the crawl is clean: a first tokenizer, once
    assert [(r.job_name, r.partition_key, r.run_key) for r in fourth.run_requests] == [("tokenizer_job", None, "tokenizer/first")]
