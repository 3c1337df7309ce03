"""`dagster dev` with no arguments loads the Definitions named in pyproject.toml and serves them on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from assets_defs.graph import ALL_ASSETS
from assets_defs.partitions import crawl_shards
from pipeline.dedup_io import N_RANGES

ROOT = Path(__file__).resolve().parents[2]
QUERY = '{ assetNodes { assetKey { path } } }'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _asset_keys(port: int) -> set[str] | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            nodes = json.load(response)["data"]["assetNodes"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return {"/".join(n["assetKey"]["path"]) for n in nodes}


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(tmp_path):
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRAWL2CHAT_DATA_ROOT": str(tmp_path / "data")}
    # dagster dev ignores SIGTERM as a background job; in its own session the whole group can be stopped
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        keys = None
        deadline = time.time() + 120
        while keys is None and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            keys = _asset_keys(port)
        assert keys == {a.key.to_user_string() for a in ALL_ASSETS}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_the_ui_shows_the_sample_runs_lineage_in_chromium_under_the_name_crawl2chat(sample_run, tmp_path):
    """`crawl2chat ui` on the sample run's DAGSTER_HOME, looked at in Debian's chromium: the code location is named
    crawl2chat, and the global lineage shows every asset and its materialized state (a screenshot is kept)."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(sample_run / "home"), "CRAWL2CHAT_DATA_ROOT": str(sample_run / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "assets_defs.cli", "ui", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while _asset_keys(port) is None and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
        assert _asset_keys(port) == {a.key.to_user_string() for a in ALL_ASSETS}
        locations = _graphql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        assert [e["name"] for e in locations["data"]["workspaceOrError"]["locationEntries"]] == ["crawl2chat"]
        assert "errors" not in _graphql(port, "mutation { setNuxSeen }")  # the first-visit dialog, dismissed
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1800, "height": 1400})
            # everything is downstream of warc_records: its lineage is the whole graph, groups expanded
            page.goto(f"http://127.0.0.1:{port}/assets/warc_records?view=lineage&lineageScope=downstream"
                      "&lineageDepth=30", timeout=120_000)
            page.get_by_text("rlhf_model").first.wait_for(timeout=120_000)
            page.wait_for_timeout(2000)  # the materialization states load after the graph
            shot = tmp_path / "lineage.png"
            page.screenshot(path=str(shot))
            lineage = page.inner_text("body")
            page.set_viewport_size({"width": 1800, "height": 6000})  # the catalog draws only the rows in view
            page.goto(f"http://127.0.0.1:{port}/assets", timeout=120_000)  # the catalog: each asset's state
            names = [a.key.to_user_string() for a in ALL_ASSETS]
            catalog, deadline = "", time.time() + 90
            while time.time() < deadline and (  # rows, then their states, arrive as their queries answer
                    not all(n in catalog for n in names) or "Loading" in catalog or "- partitions" in catalog):
                page.wait_for_timeout(500)
                catalog = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "catalog.png"))
            browser.close()
        assert shot.stat().st_size > 20_000
        # a long name is cut in the middle on the graph ("preferen…_rankings")
        missing = [n for n in names if n not in lineage and not (n[:8] in lineage and n[-9:] in lineage)]
        assert not missing, missing
        assert all(n in catalog for n in names), [n for n in names if n not in catalog]
        unpartitioned = [a for a in ALL_ASSETS if a.partitions_def is None]
        assert catalog.count("Materialized") >= len(unpartitioned)  # every one-off asset shows its materialization
        sharded = [a for a in ALL_ASSETS if a.partitions_def == crawl_shards]
        assert catalog.count("8 partitions") == len(sharded) == 9  # and each shard asset the sample's 8 shards
        assert catalog.count(f"{N_RANGES} partitions") >= 1  # duplicate_pairs: the crawl's ranges of band hashes
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
