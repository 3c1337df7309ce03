"""bench/bench_chat.py: the goal table of a chat checkpoint, on the sample run's held-out conversations."""

from __future__ import annotations

import re

import pytest

from bench import bench_chat


@pytest.mark.slow
def test_the_goal_table_scores_every_held_out_source_of_the_sft_checkpoint(sample_run, capsys):
    assert bench_chat.main(["--data", str(sample_run / "data"), "--items", "3", "--examples", "1",
                            "--max-new-tokens", "48"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"checkpoints/sft/step-000300: held-out accuracy", out)
    rows = dict(re.findall(r"^\| (\w+) \| [^|]* \| (\d+) \| \d+% \|", out, re.MULTILINE))
    assert {"identity", "sums", "arithmetic", "letter_counting", "unknown", "search", "multi_turn"} <= set(rows)
    assert all(1 <= int(n) <= 3 for n in rows.values())
    assert "| arithmetic | arithmetic through the python tool (3-4 digit operands) |" in out and ">= 90%" in out
    assert "[identity] expected 'crawl2chat'\nuser: " in out  # an example reply a source
    kinds = dict(re.findall(r"^\| ((?:letter|add) follow-up|change of topic) \| (\d+) \|", out, re.MULTILINE))
    assert kinds and sum(map(int, kinds.values())) == int(rows["multi_turn"])  # each second question has a kind
    if "change of topic" in kinds:
        assert re.search(r"^\| change of topic \| \d+ \| \d+% \| \d+% \|$", out, re.MULTILINE)  # and alone


@pytest.mark.slow
def test_the_headroom_table_reads_each_task_greedy_and_sampled(sample_run, capsys):
    from bench import bench_rl_headroom

    assert bench_rl_headroom.main(["--data", str(sample_run / "data"), "--tasks", "letter_counting,search",
                                   "--items", "2", "--k", "3", "--max-new-tokens", "48"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints/sft/step-000300: 2 held-out problems a task, 3 replies each" in out
    rows = re.findall(r"^\| (\w+) \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([+-][\d.]+)% \|", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["letter_counting", "search"]
    for _, greedy, sampled, at_k, headroom in rows:
        assert 0 <= float(sampled) <= float(at_k) <= 100  # any one right reply solves the problem
        assert float(headroom) == pytest.approx(float(at_k) - float(sampled), abs=0.11)
    with pytest.raises(SystemExit):
        bench_rl_headroom.main(["--data", str(sample_run / "data"), "--tasks", "chess"])


def test_a_wrong_copy_is_told_apart_by_how_much_context_it_matched():
    from bench.bench_copy import error_kind, quote_span

    #      0  1  2  3  4  5  6  7  8  9
    ids = [5, 1, 2, 3, 9, 7, 2, 4, 1, 2]  # 1 2 -> 3 earlier; 2 -> 4 after "7 2"
    assert error_kind(ids, 9, 2) == "right"
    assert error_kind(ids, 7, 3) == "one-token jump"  # after "7 2": 3 followed another 2 (at 2), not "7 2"
    ids = ids + [3]  # t = 10 after "1 2": 3 followed "1 2" before (positions 1-3), as did nothing else
    assert error_kind(ids, 10, 3) == "right" and error_kind(ids, 10, 4) == "one-token jump"
    assert error_kind([1, 2, 3, 1, 2, 9], 5, 3) == "two-token jump"  # "1 2" -> 3 once before
    assert error_kind(ids, 10, 8) == "other"
    assert quote_span([4, 1, 2, 0, 1, 2], [1, 2]) == 4 and quote_span([4, 1], [2]) is None


@pytest.mark.slow
def test_the_copy_table_reads_every_quote_token_of_the_sft_checkpoint(sample_run, capsys):
    from bench import bench_copy

    root = str(sample_run / "data" / "checkpoints" / "sft")
    assert bench_copy.main(["--data", str(sample_run / "data"), root, f"{root}@300", "--items", "3"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\S+) \| ([\d.]+)% \| (\d+)/(\d+) \| (\d+) / (\d+) / (\d+) of (\d+) \|$", out, re.MULTILINE)
    assert [r[0] for r in rows] == [root, f"{root}@300"] and rows[0][1:] == rows[1][1:]  # latest is step 300
    right, exact, quotes, *kinds, wrong = map(float, rows[0][1:])
    assert 1 <= quotes <= 3 and exact <= quotes and sum(kinds) == wrong and 0 <= right <= 100
