"""Discovery: crawl_sensor and the relist schedule's job find files that appeared and add partitions for them, and
request no runs (the assets' automation conditions do: tests/assets_defs/test_automation.py)."""

from __future__ import annotations

import dagster as dg

from assets_defs.resources import PipelineConfig
from assets_defs.sensors import crawl_sensor, relist_crawls_job
from conftest import write_warc


def _evaluate(instance, settings) -> dg.SensorResult:
    return crawl_sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))


def _added(result: dg.SensorResult) -> dict[str, list[str]]:
    return {req.partitions_def_name: list(req.partition_keys) for req in result.dynamic_partitions_requests}


def test_sensor_adds_new_crawls_and_shards_once(tmp_path, dagster_instance, good_page):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))

    first = _evaluate(dagster_instance, settings)
    assert first.run_requests == []
    assert _added(first) == {"crawls": ["web"], "shards": ["00000", "00001"]}
    for req in first.dynamic_partitions_requests:  # what the daemon does with the requests
        dagster_instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))

    write_warc(src / "f2.warc.gz", [{"url": "https://a.org/2", "body": good_page}])
    second = _evaluate(dagster_instance, settings)
    assert second.run_requests == [] and _added(second) == {"shards": ["00002"]}
    for req in second.dynamic_partitions_requests:
        dagster_instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    assert _added(_evaluate(dagster_instance, settings)) == {}


def test_relist_job_registers_what_appeared(tmp_path, dagster_instance, good_page):
    src = tmp_path / "src"
    src.mkdir()
    write_warc(src / "f0.warc.gz", [{"url": "https://a.org/0", "body": good_page}])
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    settings.registry().add("web", str(src))
    write_warc(src / "f1.warc.gz", [{"url": "https://a.org/1", "body": good_page}])  # after the crawl was added

    assert relist_crawls_job.execute_in_process(instance=dagster_instance, resources={"settings": settings}).success
    assert dagster_instance.get_dynamic_partitions("crawls") == ["web"]
    assert dagster_instance.get_dynamic_partitions("shards") == ["00000", "00001"]
    assert settings.registry().get("web").shard_keys == ["00000", "00001"]
