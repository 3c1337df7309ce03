"""Every planted case of the bundled sample ends where PLANTED.json says, after a full `crawl2chat run`."""

from __future__ import annotations

import json

import pytest

from pipeline.funnel import FUNNEL_STAGES
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.storage import Store

SHARDS = [f"{i:05d}" for i in range(8)]


@pytest.fixture(scope="module")
def outcome(sample_run):
    """url -> (stage that dropped it, reason), or ("kept", None) for a page in clean_documents."""
    store = Store(str(sample_run / "data"))
    where = {}
    for stage in FUNNEL_STAGES:
        for shard in SHARDS:
            for row in store.read(stage, "sample", shard, dropped=True).iter_rows(named=True):
                where[row["url"]] = (stage, row["reason"])
    for shard in SHARDS:
        for url in store.read("clean_documents", "sample", shard)["url"]:
            where[url] = ("kept", None)
    return where


def _cases():
    with open(f"{resolve_source(SAMPLE_SOURCE)}/PLANTED.json") as f:
        return json.load(f)["cases"]


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in _cases() if c["expect_stage"] in FUNNEL_STAGES], ids=lambda c: f"{c['case']}:{c['url'][-40:]}")
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
    english = [c["url"] for c in _cases() if c["case"] in ("exact_duplicate", "near_duplicate", "pii") and not c["expect_stage"]]
    kept = [u for u in english if outcome.get(u, (None,))[0] == "kept"]
    assert len(kept) >= 0.8 * len(english), [(u, outcome.get(u)) for u in english if u not in kept]


@pytest.fixture(scope="module")
def clean(sample_run):
    """url -> text of every document in clean_documents."""
    store = Store(str(sample_run / "data"))
    texts = {}
    for shard in SHARDS:
        df = store.read("clean_documents", "sample", shard)
        texts.update(zip(df["url"], df["text"]))
    return texts


@pytest.mark.slow
def test_every_planted_duplicate_group_collapses_to_its_first_page(sample_run, clean):
    groups: dict[str, list[dict]] = {}
    for case in _cases():
        if case["group"]:
            groups.setdefault(case["group"], []).append(case)
    assert len(groups) == 7  # 3 exact, 3 near, and one text in four charsets
    store = Store(str(sample_run / "data"))
    dropped = {r["url"]: r for shard in SHARDS for r in store.read("deduplicated", "sample", shard, dropped=True).iter_rows(named=True)}
    ids = {r["url"]: r["id"] for shard in SHARDS for r in store.read("quality_filtered", "sample", shard).iter_rows(named=True)}
    for name, members in groups.items():
        kept = [c["url"] for c in members if c["url"] in clean]
        first = next(c["url"] for c in members if c["expect_stage"] is None)
        assert kept == [first], (name, kept)
        for case in members:
            if case["url"] != first:
                assert dropped[case["url"]]["reason"] == "duplicate"
                assert dropped[case["url"]]["detail"] == ids[first], "the exclusion names the survivor's id"


@pytest.mark.slow
def test_no_distinct_page_is_dropped_as_a_duplicate(sample_run):
    planted = {c["url"] for c in _cases() if c["expect_stage"] == "deduplicated"}
    store = Store(str(sample_run / "data"))
    dropped = {r["url"] for shard in SHARDS for r in store.read("deduplicated", "sample", shard, dropped=True).iter_rows(named=True)}
    assert dropped == planted


@pytest.mark.slow
def test_planted_pii_is_gone_and_decoys_survive(clean):
    cases = [c for c in _cases() if c["case"] == "pii"]
    assert len(cases) == 4
    everything = "\n".join(clean.values())
    for case in cases:
        text = clean[case["url"]]
        for pii in case["pii"]:
            assert pii not in everything, pii
        for decoy in case["decoys"]:
            assert decoy in text, decoy
        assert "<EMAIL_ADDRESS>" in text


@pytest.mark.slow
def test_clean_documents_have_the_fineweb_schema(sample_run):
    df = Store(str(sample_run / "data")).read("clean_documents", "sample", SHARDS[0])
    assert df.columns == ["text", "id", "dump", "url", "date", "file_path", "language", "language_score", "token_count"]


@pytest.mark.slow
def test_token_shards_cover_every_clean_document(sample_run):
    import numpy as np

    from pipeline.token_io import TOKENS, load_tokenizer, read_tokens

    store = Store(str(sample_run / "data"))
    tok, sha = load_tokenizer(store)
    for shard in SHARDS:
        manifest = store.manifest(TOKENS, "sample", shard)
        assert manifest["dtype"] == "uint16" and manifest["tokenizer_sha256"] == sha
        clean = store.read("clean_documents", "sample", shard)
        seen = 0
        for part in store.parts(TOKENS, "sample", shard):
            index, tokens = store.read_part(TOKENS, "sample", shard, part), read_tokens(store, "sample", shard, part)
            assert tokens.dtype == np.dtype("<u2") and len(tokens) == int((index["token_count"] + 1).sum())
            texts = dict(zip(clean["id"], clean["text"]))
            for doc_id, offset, count in index.select("id", "offset", "token_count").iter_rows():
                assert tokens[offset - 1] == tok.eot_id and count > 0
                assert tok.decode(tokens[offset : offset + count].tolist()) == texts[doc_id]
            seen += index.height
        assert seen == clean.height
