"""Backfills in batches of shards (CRAWL2CHAT_SHARDS_PER_RUN, a BackfillPolicy on every crawl x shard asset), through
the real daemon: an asset backfill of two shards is one run, and each shard's checks land under its own partition."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO, html_page, write_warc

BIN = Path(sys.executable).parent
INGEST = ["warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
          "minhash_signatures"]


def _policies(shards_per_run: str) -> subprocess.CompletedProcess:
    code = ("from assets_defs.definitions import defs\n"
            "graph = defs.resolve_asset_graph()\n"
            "for key in sorted(graph.get_all_asset_keys()):\n"
            "    policy = graph.get(key).backfill_policy\n"
            "    print(key.to_user_string(), policy.max_partitions_per_run if policy else None)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "CRAWL2CHAT_SHARDS_PER_RUN": shards_per_run})


def test_shards_per_run_sets_the_policy_of_every_shard_asset_and_a_bad_value_fails_naming_it():
    done = _policies("4")
    assert done.returncode == 0, done.stderr[-2000:]
    policies = dict(line.split() for line in done.stdout.splitlines())
    per_shard = {name for name, n in policies.items() if n == "4"}
    assert per_shard == {*INGEST, "deduplicated", "clean_documents", "token_shards"}
    assert policies["duplicate_pairs"] == policies["duplicate_clusters"] == policies["base_model"] == "None"
    bad = _policies("0")
    assert bad.returncode != 0 and "CRAWL2CHAT_SHARDS_PER_RUN must be a whole number from 1, got '0'" in bad.stderr


@pytest.mark.slow
def test_the_daemon_runs_a_backfill_of_two_shards_as_one_batch(tmp_path, prose):
    home, data, src = tmp_path / "home", tmp_path / "data", tmp_path / "src"
    home.mkdir()
    src.mkdir()
    for i in range(2):  # a file a shard: two shards
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": html_page(f"Page {i}", [prose])}])
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRAWL2CHAT_DATA_ROOT": str(data),
           "CRAWL2CHAT_SHARDS_PER_RUN": "2", "CRAWL2CHAT_EXECUTOR": "in_process", "OMP_NUM_THREADS": "1"}
    added = subprocess.run([str(BIN / "crawl2chat"), "crawl", "add", "b", str(src), "--data", str(data)], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0 and "crawl b: 2 shard(s)" in added.stdout, added.stderr[-2000:]

    instance = dg.DagsterInstance.from_config(str(home))
    _add_asset_backfill(instance, ["b|00000", "b|00001"])
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "assets_defs.definitions"], env=env,
                              cwd=tmp_path, stdout=open(tmp_path / "daemon.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:  # the daemon's first backfill iteration launches every run of the two root partitions
        deadline, runs = time.monotonic() + 300, []
        while time.monotonic() < deadline and not (runs and all(r.is_finished for r in runs)):
            time.sleep(1)
            runs = instance.get_runs()
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    assert runs, (tmp_path / "daemon.log").read_text()[-3000:]
    (run,) = instance.get_runs()  # both shards, one run
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        "b|00000", "b|00001")
    for name in INGEST:
        assert instance.get_materialized_partitions(dg.AssetKey(name)) == {"b|00000", "b|00001"}, name
    infos = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(dg.AssetKey("quality_filtered"), "schema")])
    current = {i.partition_key for i in infos if i.is_current and i.latest_execution_status.value == "SUCCEEDED"}
    assert current >= {"b|00000", "b|00001"}


def _add_asset_backfill(instance: dg.DagsterInstance, partitions: list[str]) -> None:
    """What the UI's "Materialize" over selected partitions does: an asset backfill, which the daemon splits into
    runs by the assets' BackfillPolicy."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from assets_defs.definitions import defs

    instance.add_backfill(PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=defs.resolve_asset_graph(), partition_names=partitions,
        asset_selection=[dg.AssetKey(name) for name in INGEST], backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, all_partitions=False, title=None, description=None, run_config=None))
