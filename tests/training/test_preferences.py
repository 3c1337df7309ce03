"""Preference rankings: the pairs a ranking implies, Kendall's tau between labelers, the durable store (a killed
writer loses nothing it reported saved), and pairwise files in HH-RLHF's and UltraFeedback's forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.preferences import (BadPair, Ranking, RankingStore, agreement, kendall_tau, pairs, pairwise,
                                  read_pairwise)

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "preferences"


def _ranking(order: str, labeler: str = "ann", prompt: str = "Tell me a joke.") -> Ranking:
    return Ranking(prompt, tuple(order), labeler, "2026-12-06T10:00:00+00:00")


def test_a_ranking_of_k_answers_implies_every_pair_best_over_worse():
    assert pairs(_ranking("abcd")) == [("Tell me a joke.", x, y) for x, y in
                                       (("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d"))]
    with pytest.raises(ValueError, match="at least 2"):
        _ranking("a")
    with pytest.raises(ValueError, match="differ"):
        _ranking("aa")
    with pytest.raises(ValueError, match="labeler"):
        _ranking("ab", labeler=" ")


def test_kendalls_tau_is_one_for_the_same_order_minus_one_for_the_reverse():
    assert kendall_tau(tuple("abcd"), tuple("abcd")) == 1.0
    assert kendall_tau(tuple("abcd"), tuple("dcba")) == -1.0
    assert kendall_tau(tuple("abcd"), tuple("bacd")) == pytest.approx(4 / 6)  # one of six pairs swapped
    with pytest.raises(ValueError):
        kendall_tau(tuple("abc"), tuple("abd"))


def test_agreement_is_measured_only_where_labelers_ranked_the_same_answers():
    rankings = [_ranking("abcd", "ann"), _ranking("bacd", "bob"), _ranking("abcd", "cat"),
                _ranking("xy", "ann", prompt="Other?"), _ranking("wxyz", "bob", prompt="Third?")]
    result = agreement(rankings)
    assert result["shared_prompts"] == 1 and result["labeler_pairs"] == 3
    assert result["kendall_tau"] == pytest.approx((4 / 6 + 1 + 4 / 6) / 3)
    assert agreement(rankings[3:]) == {"kendall_tau": None, "shared_prompts": 0, "labeler_pairs": 0}


def test_a_ranking_reported_saved_survives_its_writer_being_killed(tmp_path):
    """A child adds a ranking, says so, and is SIGKILLed at once: the ranking is there, and the file is in WAL
    mode."""
    db = tmp_path / "rankings.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom training.preferences import Ranking, RankingStore\n"
         f"store = RankingStore({str(db)!r})\n"
         "for i in range(3):\n"
         "    store.add(Ranking(f'prompt {i}', ('good', 'bad'), 'ann', '2026-12-06T10:00:00+00:00'))\n"
         "    print('saved', i, flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    for i in range(3):
        assert child.stdout.readline().strip() == f"saved {i}"
    child.kill()
    child.wait()
    store = RankingStore(db)
    assert [r.prompt for r in store.rankings()] == ["prompt 0", "prompt 1", "prompt 2"]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.add(_ranking("ba", "bob"))
    assert [r.labeler for r in store.rankings()] == ["ann"] * 3 + ["bob"]
    store.close()


def test_hh_rlhf_dialogues_become_prompt_chosen_rejected_and_bad_lines_are_counted():
    rankings, report = read_pairwise(str(SAMPLES / "hh_rlhf.jsonl"), labeler="hh")
    assert report.records == 12 and report.imported == 8 and sum(report.skipped.values()) == 4
    assert set(report.skipped) == {"chosen and rejected answer different dialogues", "not JSON",
                                   "not an HH-RLHF dialogue (no Human and Assistant turns)",
                                   "chosen and rejected are the same answer"}
    first = rankings[0]
    assert first.prompt == "Human: How do I boil an egg?" and first.labeler == "hh"
    assert first.responses == ("Put the egg in boiling water for about nine minutes, then cool it in cold water.",
                               "Eggs are a food.")
    multi = next(r for r in rankings if "Is it hard?" in r.prompt)  # earlier turns stay in the prompt
    assert multi.prompt.startswith("Human: I want to learn Python.") and "\n\nAssistant: Start with" in multi.prompt
    assert multi.source.endswith("hh_rlhf.jsonl")


def test_ultrafeedback_parquet_takes_the_last_assistant_message_of_each_side():
    rankings, report = read_pairwise(str(SAMPLES / "ultrafeedback.parquet"))
    assert report.records == report.imported == 6 and not report.skipped
    assert rankings[2].prompt == "Translate 'good morning' into Spanish."
    assert rankings[2].responses == ("Buenos días.", "Buenas noches.")


@pytest.mark.parametrize("record, reason", [
    ({"prompt": "q", "chosen": "a"}, "no chosen and rejected"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "no prompt"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}], "rejected": "b"}, "not the assistant's"),
    ({"prompt": "q", "chosen": "a", "rejected": 3}, "neither text nor a list"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "the same answer"),
])
def test_a_bad_pair_says_why(record, reason):
    with pytest.raises(BadPair, match=reason):
        pairwise(json.dumps(record))


def test_a_file_with_no_usable_pair_is_an_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"chosen": "x"}\nnot json\n')
    with pytest.raises(ValueError, match="none of its 2 records"):
        read_pairwise(str(path))


def test_rankings_in_postgres_are_committed_before_add_returns_and_read_back_in_order(postgres_url):
    from training.preferences import PostgresRankingStore, describe, open_rankings

    store = open_rankings(postgres_url)
    assert isinstance(store, PostgresRankingStore)
    ids = [store.add(_ranking("abc", labeler)) for labeler in ("ann", "bob")]
    other = open_rankings(postgres_url)  # another connection, as another machine's page would have
    assert [r.labeler for r in other.rankings()] == ["ann", "bob"] and ids == [1, 2]
    assert agreement(other.rankings())["kendall_tau"] == 1.0
    with pytest.raises(ValueError):
        store.add(_ranking("a"))  # a bad ranking is refused before the database
    store.add(_ranking("cab", "cy"))  # and the connection goes on
    assert len(other.rankings()) == 3
    store.close()
    other.close()
    assert "secret" not in describe(postgres_url) and describe(postgres_url).startswith("postgresql://crawl@127.0.0.1:")
    assert describe("/data/labels/rankings.sqlite") == "/data/labels/rankings.sqlite"
