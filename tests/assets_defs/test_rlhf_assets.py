"""preference_rankings as Dagster materializes it: the synthetic set, the labeling page's SQLite rankings (with the
labelers' agreement) and imported pairwise files in HH-RLHF's and UltraFeedback's forms, merged into pairs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets_defs.resources import PipelineConfig
from assets_defs.rlhf_assets import PreferenceConfig, RewardConfig, preference_rankings
from pipeline.storage import Store
from training.preferences import Ranking, RankingStore, load_rankings, pair_rows
from training.sft_data import HELD_OUT, TRAIN

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "preferences"


def _materialize(root: Path, preferences: PreferenceConfig) -> dict:
    result = dg.materialize([preference_rankings], instance=dg.DagsterInstance.ephemeral(), resources={
        "settings": PipelineConfig(data_root=str(root)), "preferences": preferences})
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_rankings_from_the_program_the_labeling_page_and_files_become_pairs(tmp_path):
    root = tmp_path / "data"
    store = RankingStore(root / "labels" / "rankings.sqlite")  # where `crawl2chat label` keeps them by default
    answers = ("A pun about tokens.", "A knock-knock joke.", "No joke, sorry.", "Tokens tokens tokens")
    for labeler, order in (("ann", (0, 1, 2, 3)), ("bob", (0, 2, 1, 3))):
        store.add(Ranking("Tell me a joke.", tuple(answers[i] for i in order), labeler, "2026-12-06T10:00:00+00:00"))
    store.close()
    imports = [str(SAMPLES / "hh_rlhf.jsonl"), str(SAMPLES / "ultrafeedback.parquet")]
    meta = _materialize(root, PreferenceConfig(synthetic=10, synthetic_held_out=2, imports=imports))
    assert meta["human_rankings"] == 2 and meta["labelers"] == 2
    assert meta["agreement"] == {"kendall_tau": pytest.approx(4 / 6), "shared_prompts": 1, "labeler_pairs": 1}
    by_kind = meta["pairs_by_kind"]
    assert sum(by_kind["human"].values()) == 12  # two rankings of 4 answers: 6 pairs each
    assert {k: by_kind[k] for k in ("correct_vs_wrong", "fluent_vs_degenerate")} == {
        "correct_vs_wrong": {TRAIN: 10, HELD_OUT: 2}, "fluent_vs_degenerate": {TRAIN: 10, HELD_OUT: 2}}
    imported = meta["imports"]
    assert set(imported) == set(imports) and all(r["imported"] > 0 for r in imported.values())
    assert sum(by_kind["import"].values()) == sum(r["imported"] for r in imported.values())
    rows = load_rankings(Store(str(root)))
    assert meta["rankings"] == len(rows) and meta["pairs"] == len(pair_rows(rows))
    human = [r for r in rows if r["kind"] == "human"]
    assert [r["labeler"] for r in human] == ["ann", "bob"] and human[0]["responses"][0] == answers[0]
    assert len({r["split"] for r in human}) == 1  # one prompt, one side of the split, whoever ranked it


def test_no_rankings_at_all_is_a_committed_empty_table(tmp_path):
    meta = _materialize(tmp_path, PreferenceConfig(synthetic=0, synthetic_held_out=0, labels=str(tmp_path / "none")))
    assert meta["rankings"] == meta["pairs"] == 0
    assert load_rankings(Store(str(tmp_path))) == []


def test_a_bad_setting_fails_when_the_settings_are_made_naming_it():
    with pytest.raises(ValueError, match="a pairwise file is .jsonl"):
        PreferenceConfig(imports=["prefs.csv"])
    with pytest.raises(ValueError, match="max_steps"):
        RewardConfig(max_steps=0)
    assert RewardConfig(lr=3e-4).command("d")[-20:].count("--lr") == 1


def test_rankings_kept_in_postgres_are_read_from_the_url_in_the_environment(tmp_path, postgres_url, monkeypatch):
    from training.preferences import open_rankings

    store = open_rankings(postgres_url)
    store.add(Ranking("Write a poem.", ("Roses are red.", "Poem poem poem."), "ann", "2026-12-06T10:00:00+00:00"))
    store.close()
    monkeypatch.setenv("CRAWL2CHAT_LABELS_DB", postgres_url)
    meta = _materialize(tmp_path, PreferenceConfig(synthetic=0, synthetic_held_out=0))
    assert meta["human_rankings"] == 1 and sum(meta["pairs_by_kind"]["human"].values()) == 1
    assert meta["labels"].startswith("postgresql://crawl@127.0.0.1:")
    assert "secret" not in str(meta) and "secret" not in str(Store(str(tmp_path)).manifest(
        "preference_rankings", "all", "all"))  # the password stays in the environment
