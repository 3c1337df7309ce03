"""Shards that end up with no documents are normal shards: every asset down to token_shards (and the tokenizer and
the search index) runs on them, writes its own schema with zero rows, and records why the documents went."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from assets_defs.chat_assets import search_index
from assets_defs.cli import materialize_crawl
from assets_defs.graph import ASSET_ORDER
from assets_defs.partitions import register_partitions
from assets_defs.resources import PipelineConfig
from assets_defs.stage_asset import SCHEMAS
from conftest import html_page, write_warc
from pipeline.documents import EXCLUSION_SCHEMA

FRENCH = (
    "Le projet Debian est une association de personnes qui ont fait cause commune pour créer un système "
    "d'exploitation libre. Ce système d'exploitation est appelé Debian. Un système d'exploitation est "
    "l'ensemble des programmes de base et des utilitaires qui permettent à un ordinateur de fonctionner. "
    "Au cœur d'un système d'exploitation se trouve le noyau, le programme le plus fondamental de l'ordinateur."
)
SHARD_ASSETS = ["warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered",
                "deduplicated", "clean_documents"]


def _empty_crawl(folder) -> dict[str, str]:
    """One WARC file a shard, each of which leaves no document; returns file name -> the reason expected."""
    folder.mkdir()
    (folder / "a-garbage.warc.gz").write_bytes(os.urandom(5000))
    write_warc(folder / "b-not-html.warc.gz", [
        {"url": "https://a.org/x.pdf", "body": b"%PDF-1.4 ...", "content_type": "application/pdf"},
        {"url": "https://a.org/moved", "body": b"", "status": "301 Moved Permanently"},
        {"url": "https://a.org/logo.png", "body": b"\x89PNG\r\n", "content_type": "image/png"},
    ])
    write_warc(folder / "c-french.warc.gz", [
        {"url": f"https://fr.example.org/{i}", "body": html_page("Debian", [FRENCH, FRENCH.replace("Debian", "GNU")])}
        for i in range(3)
    ])
    (folder / "d-empty.warc").write_bytes(b"")
    (folder / "e-zero.warc.gz").write_bytes(b"")
    return {"a-garbage.warc.gz": "not_warc", "b-not-html.warc.gz": "not_html", "c-french.warc.gz": "other_language",
            "d-empty.warc": "empty_file", "e-zero.warc.gz": "empty_file"}


@pytest.mark.slow
def test_shards_without_documents_flow_to_token_shards(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    expected = _empty_crawl(tmp_path / "nothing")
    crawl, _ = settings.registry().add("nothing", str(tmp_path / "nothing"))
    assert len(crawl.shards) == 5
    register_partitions(dagster_instance, crawl.name, crawl.shard_keys)
    failed = materialize_crawl(dagster_instance, {"settings": settings}, crawl,
                               ASSET_ORDER[: ASSET_ORDER.index("token_shards") + 1])
    assert failed == []

    store = settings.store()
    for shard, (name,) in zip(crawl.shard_keys, crawl.shards):
        for asset in SHARD_ASSETS:  # each asset's own columns, rows or none (the French pages last to language ID)
            kept = store.read(asset, "nothing", shard)
            assert dict(kept.schema) == SCHEMAS[asset], (name, asset, kept.schema)
            if SHARD_ASSETS.index(asset) >= SHARD_ASSETS.index("language_filtered"):
                assert kept.height == 0, (name, asset)
        reasons = set()
        for asset in SHARD_ASSETS:
            dropped = store.read(asset, "nothing", shard, dropped=True)
            assert dict(dropped.schema) == EXCLUSION_SCHEMA
            reasons |= set(dropped["reason"])
        assert expected[name] in reasons, (name, reasons)
        index = store.read("token_shards", "nothing", shard)
        assert index.height == 0 and index.columns == ["id", "url", "offset", "token_count"]

    # every check ran on every empty partition, and none failed (a warning is allowed)
    evaluations = [
        event.dagster_event.event_specific_data
        for run in dagster_instance.get_runs()
        for event in dagster_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    checked = {e.asset_key.to_user_string() for e in evaluations}
    assert set(SHARD_ASSETS + ["token_shards", "tokenizer"]) <= checked
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations
              if not e.passed and e.severity != dg.AssetCheckSeverity.WARN]
    assert failed == []
    assert ("tokenizer", "has_training_text") in {(e.asset_key.to_user_string(), e.check_name) for e in evaluations
                                                  if not e.passed}

    # the crawl-wide steps: clusters of nothing, a tokenizer with no text to learn from, a search index with no passage
    assert store.read("duplicate_clusters", "nothing", "all").height == 0
    tokenizer = next(iter(dagster_instance.get_latest_materialization_events([dg.AssetKey("tokenizer")]).values()))
    assert tokenizer.asset_materialization.metadata["training_docs"].value == 0
    result = dg.materialize([search_index], instance=dagster_instance, resources={"settings": settings})
    assert result.success
    meta = result.asset_materializations_for_node("search_index")[0].metadata
    assert meta["passages"].value == 0
