"""The new-shards sensor: finds files that appeared, adds partitions, asks for each shard's run once."""

from __future__ import annotations

import json

import dagster as dg

from assets_defs.resources import PipelineConfig
from assets_defs.sensors import new_shards_sensor
from conftest import write_warc


def _evaluate(instance, settings, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
    return new_shards_sensor(context)


def test_sensor_adds_new_shards_with_a_cursor(tmp_path, dagster_instance, good_page):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))

    first = _evaluate(dagster_instance, settings, None)
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
