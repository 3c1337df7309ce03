"""The shared deployment for real: Dagster's run, event-log and schedule storage on a PostgreSQL cluster of its own
(infra/dagster.yaml as shipped), the daemon with the QueuedRunCoordinator, a partitioned backfill over the sample's
shards launched from the CLI, and the pool that caps the steps reading Common Crawl's bucket holding across runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.sources import SAMPLE_SOURCE, resolve_source

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args: list[str], env: dict, cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals in progress at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_a_backfill_runs_through_the_daemon_on_postgres_with_the_read_pool_capped(postgres_url, tmp_path):
    import psycopg2

    dagster_url = postgres_url.replace("postgresql://", "postgresql+psycopg2://")
    home = tmp_path / "home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "infra" / "dagster.yaml").read_text())
    # With no run buffer (Dagster's default, the deployment's) the run queue holds a run whose first step's pool is
    # full, so whether the two runs overlap depended on the timing (a 13 s run came out before the other went in).
    # The queue counts a pool's free slots as limit - steps holding or waiting for one - runs launched this pass - runs
    # started under 5 s ago, plus the buffer. A buffer of 1 was not enough: run 2, queued a pass after run 1, met
    # 1 - 1 - 1 + 1 = 0 while run 1 was young and reading, and the next pass (5 s on) came as run 1 ended (CI,
    # 2026-12-07: run 2 began 1.5 s after run 1's end). With 2 the queue lets run 2 out at any pass, so the runs
    # overlap and only the pool keeps their reads apart.
    settings["concurrency"]["pools"]["op_granularity_run_buffer"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": dagster_url,
           "CRAWL2CHAT_DATA_ROOT": str(tmp_path / "data"), "OMP_NUM_THREADS": "1",
           "CRAWL2CHAT_EXECUTOR": "in_process"}  # a run's six steps in its own process (pools hold there too): one
    # code load a run instead of seven: 1 min 45 s alone on 2 AVX2 cores (5.4 min with the suite beside it before)
    crawl = tmp_path / "warcs"  # four of the sample's files, two a shard: two shards, two runs
    crawl.mkdir()
    for path in sorted(Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz"))[:4]:
        shutil.copy(path, crawl)
    out = _run([str(BIN / "crawl2chat"), "crawl", "add", "pg", str(crawl), "--files-per-shard", "2",
                "--data", str(tmp_path / "data")], env, tmp_path)
    assert "crawl pg: 2 shard(s), 2 new" in out
    _run([str(BIN / "dagster"), "instance", "concurrency", "set", "commoncrawl", "1"], env, tmp_path)
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "assets_defs.definitions"], env=env,
                              cwd=tmp_path, stdout=open(tmp_path / "daemon.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        _run([str(BIN / "dagster"), "job", "backfill", "-m", "assets_defs.definitions", "-j", "ingest_job",
              "--partitions", "pg|00000,pg|00001", "--noprompt"], env, tmp_path)
        with psycopg2.connect(postgres_url) as db, db.cursor() as cursor:
            deadline, statuses = time.monotonic() + 420, {}
            while time.monotonic() < deadline:
                cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
                statuses = dict(cursor.fetchall())
                db.commit()
                if statuses.get("SUCCESS", 0) + statuses.get("FAILURE", 0) >= 2:
                    break
                time.sleep(2)
            assert statuses == {"SUCCESS": 2}, (statuses, (tmp_path / "daemon.log").read_text()[-3000:])
            cursor.execute("SELECT count(*) FROM bulk_actions")  # the backfill itself, in Postgres
            assert cursor.fetchone()[0] == 1
            cursor.execute("SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = "
                           "'ASSET_MATERIALIZATION'")
            materialized = set(cursor.fetchall())
            keys = {"warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
                    "minhash_signatures"}
            assert materialized == {(f'["{k}"]', p) for k in keys for p in ("pg|00000", "pg|00001")}
            cursor.execute("SELECT run_id, step_key, dagster_event_type, timestamp FROM event_logs WHERE step_key = "
                           "'warc_records' AND dagster_event_type IN ('STEP_START', 'STEP_SUCCESS') ORDER BY id")
            steps: dict[str, dict] = {}
            for run_id, _, event, at in cursor.fetchall():
                steps.setdefault(run_id, {})[event] = at.timestamp()
            cursor.execute("SELECT start_time, end_time FROM runs")
            runs = cursor.fetchall()
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    reads = [(s["STEP_START"], s["STEP_SUCCESS"]) for s in steps.values()]
    assert len(reads) == 2 and _overlap(reads) == 1  # the pool's one slot: never two reads at once
    assert _overlap(runs) == 2  # while the runs themselves overlapped: the pool, not the run queue, kept them apart
