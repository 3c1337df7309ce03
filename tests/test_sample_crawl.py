"""Every planted case of the bundled sample ends where PLANTED.json says, after a full `crawl2chat run`."""

from __future__ import annotations

import json

import pytest

from pipeline.funnel import DATA_STAGES
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.storage import Store

SHARDS = [f"{i:05d}" for i in range(8)]


@pytest.fixture(scope="module")
def outcome(sample_run):
    """url -> (stage that dropped it, reason), or ("kept", None) for a page in quality_filtered."""
    store = Store(str(sample_run / "data"))
    where = {}
    for stage in DATA_STAGES:
        for shard in SHARDS:
            for row in store.read(stage, "sample", shard, dropped=True).iter_rows(named=True):
                where[row["url"]] = (stage, row["reason"])
    for shard in SHARDS:
        for url in store.read("quality_filtered", "sample", shard)["url"]:
            where[url] = ("kept", None)
    return where


def _cases():
    with open(f"{resolve_source(SAMPLE_SOURCE)}/PLANTED.json") as f:
        return json.load(f)["cases"]


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in _cases() if c["expect_stage"] in DATA_STAGES], ids=lambda c: f"{c['case']}:{c['url'][-40:]}")
def test_planted_drop_happens_at_its_stage(case, outcome):
    stage, reason = outcome.get(case["url"], (None, None))
    assert stage == case["expect_stage"], case
    if case["expect_reason"]:
        assert reason == case["expect_reason"], case


@pytest.mark.slow
def test_charset_cases_are_kept_and_decoded(sample_run, outcome):
    store = Store(str(sample_run / "data"))
    texts = {}
    for shard in SHARDS:
        df = store.read("extracted_text", "sample", shard)
        texts.update(zip(df["url"], df["text"]))
    cases = [c for c in _cases() if c["case"] in ("charset_mislabelled", "charset_meta_latin1", "invalid_utf8", "unknown_charset")]
    assert len(cases) == 4
    for case in cases:
        assert case["url"] in texts, case
    mislabelled = next(c for c in cases if c["case"] == "charset_mislabelled")
    assert "é" in texts[mislabelled["url"]] and "Ã©" not in texts[mislabelled["url"]]
    assert "\ufffd" in texts[next(c for c in cases if c["case"] == "invalid_utf8")["url"]]


@pytest.mark.slow
def test_ordinary_english_pages_mostly_survive(outcome):
    english = [c["url"] for c in _cases() if c["case"] in ("exact_duplicate", "near_duplicate", "pii")]
    kept = [u for u in english if outcome.get(u, (None,))[0] == "kept"]
    assert len(kept) >= 0.8 * len(english), [(u, outcome.get(u)) for u in english if u not in kept]
