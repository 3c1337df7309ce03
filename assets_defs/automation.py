"""When assets materialize on their own: the declarative automation conditions of the data graph.

`crawl_sensor` only registers crawls and shards as dynamic partitions; `automation_sensor` evaluates these conditions
and launches the runs. Automation reaches `token_shards`: WARC -> clean_documents per shard, the crawl's dedup once
every shard has its signatures, the first tokenizer, token shards. Training (base_model and after) costs GPU hours
and stays a person's decision: those assets have no condition and are launched from the UI or `crawl2chat run`.

Every condition but the root's stays false while a *blocking* check failed on an upstream partition it reads, so bad
data does not flow on. A failed run is not retried on its own, and an upstream change is acted on once ("since last
handled").
"""

import dagster as dg

from assets_defs.resources import PipelineConfig

AC = dg.AutomationCondition


class ShardOfItsCrawl(dg.AutomationCondition):
    """True for a crawl x shard partition whose shard its crawl has. Shard numbers are shared across crawls, so the
    partitions are every crawl with every shard number: a two-shard crawl next to an eight-shard one has six
    partitions that name no files, which must neither be requested nor count as missing upstream. Other
    partitionings pass whole. The crawls are read from the data root the Definitions use (CRAWL2CHAT_DATA_ROOT), so
    the automation sensor evaluates in the code server."""

    @property
    def name(self) -> str:
        return "shard_of_its_crawl"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        dims = getattr(context.partitions_def, "partition_dimension_names", [])
        if dims != ["crawl", "shard"]:
            return dg.AutomationResult(context, true_subset=candidates)
        registry = PipelineConfig(data_root=dg.EnvVar("CRAWL2CHAT_DATA_ROOT").get_value("data")).registry()
        shards_of = {name: set(registry.get(name).shard_keys) for name in registry.names()}
        keep = set()
        for key in candidates.expensively_compute_partition_keys():
            parts = context.partitions_def.get_partition_key_from_str(key).keys_by_dimension
            if parts["shard"] in shards_of.get(parts["crawl"], ()):
                keep.add(key)
        true_subset = context.asset_graph_view.compute_intersection_with_partition_keys(keep, candidates)
        return dg.AutomationResult(context, true_subset=true_subset)


shard_of_its_crawl = ShardOfItsCrawl()

# The parts. `missing` is asked on every tick, not only when a partition appears (Dagster's on_missing), so shards
# registered before the automation sensor was started are made too; a partition whose last run failed waits for a
# person (a rerun, a backfill) instead of failing again every tick.
missing_and_not_failed = (AC.missing() & ~AC.execution_failed()).with_label("missing_and_not_failed")
upstream_newer = AC.any_deps_updated().since_last_handled().with_label("upstream_newer")
# Dagster's any_deps_missing, but only over partitions that name files (shard_of_its_crawl)
upstream_missing = AC.any_deps_match(
    shard_of_its_crawl & AC.missing() & ~AC.will_be_requested()
).with_label("upstream_missing")
# Dagster's all_deps_blocking_checks_passed holds for a dependency when any one partition it maps to passed; an asset
# that reads many partitions (a crawl's every shard, the tokenizer's every crawl) must also find none failed.
no_upstream_blocking_check_failed = ~AC.any_deps_match(
    AC.any_checks_match(AC.check_failed() & ~AC.will_be_requested(), blocking_only=True)
).with_label("no_upstream_blocking_check_failed")
upstream_ready = (
    ~upstream_missing & ~AC.any_deps_in_progress() & AC.all_deps_blocking_checks_passed()
    & no_upstream_blocking_check_failed
).with_label("upstream_ready")

# A shard stage with no upstream asset (it reads the shard's WARC files): when the sensor has added its partition.
on_new_shard = (shard_of_its_crawl & missing_and_not_failed & ~AC.in_progress()).with_label("on_new_shard")

# A stage downstream of others: missing, or an upstream partition it reads was materialized since it was last
# requested; and none of those is missing or in progress, and every blocking check on them passed. Assets that are
# requested on one tick and share a partitioning run together, so a new shard's stages are one run.
when_upstream_updated_and_checks_passed = (
    shard_of_its_crawl & (missing_and_not_failed | upstream_newer) & upstream_ready & ~AC.in_progress()
).with_label("when_upstream_updated_and_checks_passed")

# A per-crawl asset that reads every shard of its crawl (duplicate_clusters, and duplicate_pairs per hash range): it
# waits until no shard of the crawl is missing or in progress, so it runs once, when the crawl's last shard lands,
# and again when a shard is added or rematerialized. The same expression as a shard stage's, named apart because here
# one failed shard (missing, or a blocking check failed) holds the whole crawl.
when_every_shard_ready = (
    (missing_and_not_failed | upstream_newer) & upstream_ready & ~AC.in_progress()
).with_label("when_every_shard_ready")

# The tokenizer: trained once, when it is missing and every registered shard is clean. Retraining changes every token
# id, so after the first one it is a person's decision, not an upstream update's.
once_when_every_shard_ready = (missing_and_not_failed & upstream_ready & ~AC.in_progress()).with_label(
    "once_when_every_shard_ready"
)

# A backfill (or automation_sensor's, which it emits when it asks for several partitions) launches one run a crawl x
# shard partition, or CRAWL2CHAT_SHARDS_PER_RUN of them (assets_defs/partitions.py's SHARD_BATCHES); a batch records
# each shard's checks under its partition (stage_asset.each_shard), so the conditions below read them as they do a
# single shard's.

# Stopped by default, like crawl_sensor: `crawl2chat run` materializes in-process, and an automation sensor left
# running in `crawl2chat ui`'s daemon would launch the same partitions a second time. A deployment starts both.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    use_user_code_server=True,  # shard_of_its_crawl is Python of ours, evaluated where the code is
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Materializes the data graph through clean_documents, the crawl's dedup and token_shards as new "
    "shards land (assets' automation conditions); training assets have none and stay manual.",
)
