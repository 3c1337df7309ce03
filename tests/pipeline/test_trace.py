"""Lineage you can trace, on the sample run: every planted page's path back to its WARC record with the stage and
reason PLANTED.json expects, a duplicate pointing at its survivor, the PII types redacted, and a checkpoint's chain
back to pretraining's token shards and tokenizer."""

from __future__ import annotations

import json

import pytest

from assets_defs.cli import main
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.storage import Store
from pipeline.trace import find_ids, trace_document
from training.lineage import trace_checkpoint

CRAWLS = {"sample": [f"{i:05d}" for i in range(8)]}


def _cases() -> list[dict]:
    with open(f"{resolve_source(SAMPLE_SOURCE)}/PLANTED.json") as f:
        return json.load(f)["cases"]


@pytest.mark.slow
def test_every_planted_page_traces_back_to_its_record_and_the_stage_that_decided(sample_run):
    store = Store(str(sample_run / "data"))
    traced = 0
    for case in _cases():
        ids = find_ids(store, CRAWLS, case["url"])
        if case["case"] == "revisit":  # a revisit record is not a response: no document is made of it
            assert ids == []
            continue
        trace = trace_document(store, CRAWLS, ids[0])
        assert trace["record"]["url"] == case["url"] and trace["shard"] == case["file"][-13:-8]
        decisions = [s["decision"] for s in trace["stages"]]
        dropped = next((s for s in trace["stages"] if s["decision"] == "dropped"), None)
        assert (dropped and dropped["stage"]) == case["expect_stage"], (case, trace["stages"])
        if case["expect_reason"]:
            assert dropped["reason"] == case["expect_reason"]
        if dropped:  # every stage after the one that dropped it says so
            assert set(decisions[decisions.index("dropped") + 1:]) <= {"not reached"}
            if dropped["stage"] != "warc_records":
                assert trace["record"]["file_path"].endswith(case["file"]) and trace["record"]["offset"] >= 0
        else:
            assert decisions == ["kept"] * len(decisions)
        traced += 1
    assert traced == len(_cases()) - 1


@pytest.mark.slow
def test_a_duplicate_names_its_survivor_and_a_kept_page_its_redacted_pii(sample_run):
    store = Store(str(sample_run / "data"))
    duplicate = next(c for c in _cases() if c["case"] == "exact_duplicate" and c["expect_stage"] == "deduplicated")
    trace = trace_document(store, CRAWLS, find_ids(store, CRAWLS, duplicate["url"])[0])
    survivor = trace["stages"][-2]["duplicate_of"]
    kept = trace_document(store, CRAWLS, survivor)
    assert kept["stages"][-1]["decision"] == "kept" and kept["record"]["url"] != duplicate["url"]
    pii = next(c for c in _cases() if c["case"] == "pii" and "jane.doe@example.com" in c["pii"])
    trace = trace_document(store, CRAWLS, find_ids(store, CRAWLS, pii["url"])[0])
    assert trace["stages"][-1] == {"stage": "clean_documents", "decision": "kept",
                                   "pii_redacted": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}}  # its 3 planted strings
    with pytest.raises(KeyError, match="no document"):
        trace_document(store, CRAWLS, "<urn:uuid:not-there>")


@pytest.mark.slow
def test_the_cli_traces_a_document_and_a_checkpoint_back_to_its_crawl(sample_run, capsys, monkeypatch):
    monkeypatch.chdir(sample_run)
    store = Store(str(sample_run / "data"))
    spam = next(c for c in _cases() if c["case"] == "spam_url" and c["expect_stage"] == "url_filtered")
    assert main(["trace", find_ids(store, CRAWLS, spam["url"])[0], "--data", "data"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert spam["url"] in out and f"sample, shard {spam['file'][-13:-8]}" in out
    assert "url_filtered dropped: " + spam["expect_reason"] in out and "clean_documents not reached" in out
    assert main(["trace", "checkpoints/rlhf", "--data", "data"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for line in ("rlhf step 10:", "scored by the reward model", "sft step 300:", "base step 200:",
                 "trained on 8 token shard(s) of crawl(s) sample", "tokenizer sha256"):
        assert line in out, out
    chain = trace_checkpoint("data/checkpoints/rlhf", data_root="data")
    assert [c["stage"] for c in chain] == ["rlhf", "sft", "reward", "base"]  # newest first, breadth first
    base = chain[-1]
    assert base["token_shards"] == [f"sample/{s}" for s in CRAWLS["sample"]] and base["crawls"] == ["sample"]
    assert len({c["tokenizer_sha256"] for c in chain}) == 1 and base["tokenizer"]["uri"].endswith("data/tokenizer")
