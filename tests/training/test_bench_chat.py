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
