"""The crawl sensor: finds new WARC files, then moves every crawl through the phases as their inputs land.

1. files that appeared in a registered source become new shards; each shard's ingest run is requested once;
2. when every shard of a crawl has signatures and they differ from those the clusters were made from, the crawl's
   cluster run is requested (run key = the signatures' fingerprint, so once per change);
3. when a shard's deduplicated output was made from other clusters than the current ones, its clean run is requested;
4. once a crawl is clean: the tokenizer if none exists, then token shards made from another tokenizer or older
   clean documents.
"""

import json

import dagster as dg

from assets_defs.graph import JOBS
from assets_defs.partitions import crawls, partition_key, shards
from assets_defs.resources import PipelineConfig
from pipeline import dedup_io, token_io
from pipeline.storage import PartitionMissing


@dg.sensor(jobs=list(JOBS.values()), minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def crawl_sensor(context: dg.SensorEvaluationContext, settings: PipelineConfig) -> dg.SensorResult:
    """The cursor maps each crawl to the number of shards whose ingest was already requested."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    registry, store, config = settings.registry(), settings.store(), settings.minhash_config()
    requests, add_crawls, add_shards = [], [], set()
    known_crawls = set(context.instance.get_dynamic_partitions(crawls.name))
    known_shards = set(context.instance.get_dynamic_partitions(shards.name))
    for name in registry.names():
        registry.discover(name)
        crawl = registry.get(name)
        if name not in known_crawls:
            add_crawls.append(name)
        for key in crawl.shard_keys[cursor.get(name, 0) :]:
            if key not in known_shards:
                add_shards.add(key)
            requests.append(dg.RunRequest(job_name="ingest_job", partition_key=partition_key(name, key), run_key=f"{name}/{key}/ingest"))
        cursor[name] = len(crawl.shards)
        requests += _follow_up_runs(store, name, crawl.shard_keys, config)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            *([crawls.build_add_request(add_crawls)] if add_crawls else []),
            *([shards.build_add_request(sorted(add_shards))] if add_shards else []),
        ],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _follow_up_runs(store, crawl: str, shard_keys: list[str], config) -> list[dg.RunRequest]:
    try:
        signatures = dedup_io.signatures_fingerprint(store, crawl, shard_keys, config)
    except PartitionMissing:
        return []  # some shard is still being ingested
    try:
        clusters = dedup_io.clusters_fingerprint(store, crawl)
    except PartitionMissing:
        clusters = None
    if clusters != signatures:
        return [dg.RunRequest(job_name="cluster_job", partition_key=crawl, run_key=f"{crawl}/clusters/{signatures}")]
    requests = []
    for shard in shard_keys:
        try:
            made_from = store.manifest("deduplicated", crawl, shard)["config"]["clusters"]
        except PartitionMissing:
            made_from = None
        if made_from != clusters or not store.committed("clean_documents", crawl, shard):
            requests.append(dg.RunRequest(job_name="clean_job", partition_key=partition_key(crawl, shard),
                                          run_key=f"{crawl}/{shard}/clean/{clusters}"))
    return requests or _token_runs(store, crawl, shard_keys)


def _token_runs(store, crawl: str, shard_keys: list[str]) -> list[dg.RunRequest]:
    """Once a crawl is clean: the tokenizer if none was ever trained (retraining changes every token id, so it is
    a person's decision after that), then token shards made from another tokenizer or older clean documents."""
    try:
        sha = store.manifest(token_io.TOKENIZER, token_io.ALL, token_io.ALL)["sha256"]
    except PartitionMissing:
        return [dg.RunRequest(job_name="tokenizer_job", run_key="tokenizer/first")]
    requests = []
    for shard in shard_keys:
        inputs = token_io.clean_fingerprint(store, crawl, shard)
        try:
            made = store.manifest(token_io.TOKENS, crawl, shard)
            current = made["tokenizer_sha256"] == sha and made["inputs"] == inputs
        except PartitionMissing:
            current = False
        if not current:
            requests.append(dg.RunRequest(job_name="tokens_job", partition_key=partition_key(crawl, shard),
                                          run_key=f"{crawl}/{shard}/tokens/{sha[:16]}/{inputs}"))
    return requests
