"""A sensor that finds new WARC files in registered crawls, makes shards of them and asks for their runs."""


import json

import dagster as dg

from assets_defs.partitions import crawls, partition_key, shards
from assets_defs.resources import PipelineConfig

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups("data"),
    partitions_def=None,
    description="WARC ingest to quality-filtered text for one crawl x shard partition.",
)


@dg.sensor(job=data_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def new_shards_sensor(context: dg.SensorEvaluationContext, settings: PipelineConfig) -> dg.SensorResult:
    """The cursor maps each crawl to the number of shards already requested, so a shard is asked for once."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    registry = settings.registry()
    requests, add_crawls, add_shards = [], [], set()
    known_crawls = set(context.instance.get_dynamic_partitions(crawls.name))
    known_shards = set(context.instance.get_dynamic_partitions(shards.name))
    for name in registry.names():
        registry.discover(name)
        crawl = registry.get(name)
        if name not in known_crawls:
            add_crawls.append(name)
        done = cursor.get(name, 0)
        for key in crawl.shard_keys[done:]:
            if key not in known_shards:
                add_shards.add(key)
            requests.append(dg.RunRequest(partition_key=partition_key(name, key), run_key=f"{name}/{key}"))
        cursor[name] = len(crawl.shards)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            *([crawls.build_add_request(add_crawls)] if add_crawls else []),
            *([shards.build_add_request(sorted(add_shards))] if add_shards else []),
        ],
        cursor=json.dumps(cursor, sort_keys=True),
    )
