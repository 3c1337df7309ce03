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
