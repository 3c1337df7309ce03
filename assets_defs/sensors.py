"""Discovery: files that appeared in a registered crawl's source become new shards, added as dynamic partitions.

`crawl_sensor` lists every 5 minutes; `relist_crawls_schedule` (daily, for a deployment that would rather not poll)
runs the same listing as a job. Neither requests asset runs: the assets' automation conditions do
(assets_defs/automation.py), so a new shard flows on as soon as it is a partition.
"""

import dagster as dg

from assets_defs.partitions import crawls, register_partitions, shards
from assets_defs.resources import PipelineConfig


def discover_crawls(settings: PipelineConfig) -> dict[str, list[str]]:
    """Lists each registered crawl's source again (new files become new shards); returns crawl -> its shard keys."""
    registry = settings.registry()
    found = {}
    for name in registry.names():
        registry.discover(name)
        found[name] = registry.get(name).shard_keys
    return found


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def crawl_sensor(context: dg.SensorEvaluationContext, settings: PipelineConfig) -> dg.SensorResult:
    """The instance's partitions are the state: a crawl or shard is added once, whatever the tick."""
    found, instance = discover_crawls(settings), context.instance
    new_crawls = sorted(set(found) - set(instance.get_dynamic_partitions(crawls.name)))
    new_shards = sorted({k for keys in found.values() for k in keys} - set(instance.get_dynamic_partitions(shards.name)))
    return dg.SensorResult(
        dynamic_partitions_requests=[
            *([crawls.build_add_request(new_crawls)] if new_crawls else []),
            *([shards.build_add_request(new_shards)] if new_shards else []),
        ],
    )


@dg.op(description="Lists every registered crawl's source again and adds partitions for new shards.")
def relist_crawls(context: dg.OpExecutionContext, settings: PipelineConfig) -> None:
    for name, shard_keys in discover_crawls(settings).items():
        register_partitions(context.instance, name, shard_keys)
        context.log.info(f"{name}: {len(shard_keys)} shards")


@dg.job(description="Re-lists the registered crawls (what crawl_sensor does), as a run.")
def relist_crawls_job():
    relist_crawls()


relist_crawls_schedule = dg.ScheduleDefinition(
    name="relist_crawls_schedule",
    job=relist_crawls_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 03:00 UTC: re-lists the registered crawls; off by default, like crawl_sensor.",
)
