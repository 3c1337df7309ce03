"""The parquet store: atomic parts, manifests written last, leftovers never read."""

from __future__ import annotations

import os
from collections import Counter

import polars as pl
import pytest

from pipeline.documents import EXCLUSION_SCHEMA
from pipeline.stages import PartOutput, write_partition
from pipeline.storage import PartitionMissing, Store

SCHEMA = {"text": pl.String, "id": pl.String}


def _part(name: str, n: int) -> PartOutput:
    kept = pl.DataFrame({"text": [f"doc {name} {i}" for i in range(n)], "id": [f"{name}-{i}" for i in range(n)]})
    dropped = pl.DataFrame([{"id": "x", "url": "u", "stage": "s", "reason": "too_short", "detail": None}], schema=EXCLUSION_SCHEMA)
    return PartOutput(name, kept, dropped, rows_in=n + 1, bytes_in=100)


def test_write_partition_commits_kept_dropped_and_stats(tmp_path):
    store = Store(str(tmp_path))
    stats = write_partition(store, "stage_a", "c", "00000", iter([_part("p0", 3), _part("p1", 2)]), {"k": 1}, SCHEMA)
    assert (stats.rows_in, stats.rows_out, stats.drops) == (7, 5, Counter({"too_short": 2}))
    assert store.read("stage_a", "c", "00000").height == 5
    assert store.read("stage_a", "c", "00000", dropped=True)["reason"].to_list() == ["too_short", "too_short"]
    manifest = store.manifest("stage_a", "c", "00000")
    assert manifest["parts"] == ["p0", "p1"] and manifest["config"] == {"k": 1} and manifest["stats"]["rows_out"] == 5
    assert os.path.exists(tmp_path / "stage_a/c/00000/part-p0.parquet")
    assert os.path.exists(tmp_path / "dropped/stage_a/c/00000/part-p1.parquet")


def test_rerun_replaces_and_removes_leftovers(tmp_path):
    store = Store(str(tmp_path))
    write_partition(store, "s", "c", "00000", iter([_part("p0", 3), _part("p1", 2)]), {}, SCHEMA)
    # a killed run leaves a temporary file and a part from its new output; neither is read
    (tmp_path / "s/c/00000/part-p9.parquet.tmp-dead").write_bytes(b"half a file")
    store.write_part("s", "c", "00000", "p9", _part("p9", 1).kept)
    assert store.read("s", "c", "00000").height == 5
    write_partition(store, "s", "c", "00000", iter([_part("p0", 4)]), {}, SCHEMA)
    assert sorted(os.listdir(tmp_path / "s/c/00000")) == ["_manifest.json", "part-p0.parquet"]
    assert store.read("s", "c", "00000")["id"].to_list() == [f"p0-{i}" for i in range(4)]


def test_empty_partition_has_schema_and_missing_one_raises(tmp_path):
    store = Store(str(tmp_path))
    write_partition(store, "s", "c", "00001", iter([]), {}, SCHEMA)
    df = store.read("s", "c", "00001")
    assert df.height == 0 and dict(df.schema) == SCHEMA
    with pytest.raises(PartitionMissing, match="materialize it first"):
        store.parts("s", "c", "00002")


def test_parts_take_the_stage_schema_whatever_they_carried(tmp_path):
    store = Store(str(tmp_path))
    upstream_columns = pl.DataFrame(schema={"id": pl.String, "html": pl.Binary})  # an empty upstream part
    reordered = pl.DataFrame({"id": ["a"], "text": ["t"], "extra": [1]})
    parts = [PartOutput("p0", upstream_columns, _part("x", 0).dropped, 1, 0), PartOutput("p1", reordered, _part("y", 0).dropped, 1, 1)]
    write_partition(store, "s", "c", "00000", iter(parts), {}, SCHEMA)
    assert dict(store.read_part("s", "c", "00000", "p0").schema) == SCHEMA
    assert store.read_part("s", "c", "00000", "p1").to_dicts() == [{"text": "t", "id": "a"}]
    assert dict(store.read("s", "c", "00000", dropped=True).schema) == EXCLUSION_SCHEMA

    missing_text = PartOutput("p0", pl.DataFrame({"id": ["a"]}), _part("z", 0).dropped, 1, 1)
    with pytest.raises(ValueError, match=r"s produced rows without its columns \['text'\]"):
        write_partition(store, "s", "c", "00001", iter([missing_text]), {}, SCHEMA)


def test_a_partition_that_dropped_nothing_reads_as_empty_exclusions(tmp_path):
    store = Store(str(tmp_path))
    kept = pl.DataFrame({"text": ["t"], "id": ["a"]})
    write_partition(store, "s", "c", "00000", iter([PartOutput("p0", kept, pl.DataFrame(schema=EXCLUSION_SCHEMA), 1, 1)]), {}, SCHEMA)
    dropped = store.read("s", "c", "00000", dropped=True)
    assert dropped.height == 0 and dict(dropped.schema) == EXCLUSION_SCHEMA
