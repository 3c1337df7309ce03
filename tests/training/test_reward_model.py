"""The reward model: the synthetic preference set a program judges, the scalar head, a run that learns held-out
preferences and resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter

import pytest
import torch

from pipeline.storage import Store
from training.checkpoint import load_checkpoint
from training.model import GPT, GPTConfig
from training.preferences import load_rankings, pair_rows, save_rankings
from training.reward_model import RewardModel, load_reward_model, main, padded
from training.sft_data import HELD_OUT, TRAIN
from training.synthetic_preferences import KINDS, REFUSALS, degenerate, synthetic_set, wrong_total


def test_the_synthetic_set_pairs_a_better_answer_a_program_knows_with_a_worse_one():
    pairs = synthetic_set(0, 30, 6)
    forms = Counter()
    assert Counter((p["kind"], p["split"]) for p in pairs) == {
        **{(k, TRAIN): 30 for k in KINDS}, **{(k, HELD_OUT): 6 for k in KINDS}}
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    train_prompts = {p["prompt"] for p in pairs if p["split"] == TRAIN}
    assert not {p["prompt"] for p in pairs if p["split"] == HELD_OUT} & train_prompts  # other numbers, names, words
    for p in pairs:
        if p["kind"] == "correct_vs_wrong":  # the same working and another total, or a wrong step followed through
            a, b = (int(x) for x in p["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
            assert p["chosen"].endswith(f"= {a + b}.") and not p["rejected"].endswith(f"= {a + b}.")
            same_working = p["chosen"].rsplit("So", 1)[0] == p["rejected"].rsplit("So", 1)[0]
            forms[same_working] += 1
            if not same_working:
                assert steps_agree_with_total(p["rejected"]) and steps_agree_with_total(p["chosen"])
        elif p["kind"] == "answer_vs_refusal":
            assert p["rejected"] in REFUSALS and "don't know" not in p["chosen"]
        elif p["kind"] == "refusal_vs_invention":  # the refusal wins here: liking or disliking refusals is not enough
            assert "I don't know" in p["chosen"] and "don't know" not in p["rejected"]
            name = p["prompt"].split(" born")[0].split()[-2:] if "born" in p["prompt"] else None
            assert name is None or " ".join(name) in p["rejected"]  # about the invented person, confidently
    assert forms[True] == forms[False] == 18  # half of 30 + 6 each way
    assert synthetic_set(0, 30, 6) == pairs and synthetic_set(1, 30, 6) != pairs  # one set a seed


def steps_agree_with_total(reply: str) -> bool:
    """Whether a worked sum's total is what its own steps say (right or wrong about the question's numbers)."""
    ones = int(re.search(r"Ones: \d \+ \d = (\d+)", reply).group(1))
    tens = int(re.search(r"Tens: [\d +]+ = (\d+)\.", reply).group(1))
    return reply.endswith(f"= {tens * 10 + ones % 10}.")


def test_wrong_totals_and_degenerate_replies_are_made_from_the_right_one():
    rng = random.Random(0)
    reply = "Ones: 5 + 8 = 13, write 3 and carry 1. Tens: 4 + 3 + 1 = 8. So 45 + 38 = 83."
    for _ in range(50):
        wrong = wrong_total(rng, reply)
        assert wrong.startswith("Ones: 5 + 8 = 13, write 3 and carry 1. Tens: 4 + 3 + 1 = 8. So 45 + 38 = ")
        assert wrong != reply and int(wrong.rsplit("= ", 1)[1].rstrip(".")) >= 0
        bad = degenerate(rng, reply)
        assert bad != reply and set(bad.split()) <= set(reply.split())


def test_the_head_reads_the_last_token_of_each_row_whatever_the_padding():
    torch.manual_seed(0)
    chat = GPT(GPTConfig(vocab_size=64, depth=1, seq_len=32))
    reward = RewardModel.from_chat_model(chat)
    for name, weight in chat.state_dict().items():
        assert torch.equal(weight, reward.state_dict()[name]), name  # the chat model's weights, a new head
    rows = [[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11]]
    x, lengths = padded(rows, "cpu")
    assert reward.rewards(x, lengths).tolist() == [0.0, 0.0, 0.0]  # a zero head: every reply starts at 0
    torch.nn.init.normal_(reward.score.weight)
    together = reward.rewards(x, lengths)
    alone = torch.cat([reward.rewards(*padded([r], "cpu")) for r in rows])
    assert torch.allclose(together, alone, atol=1e-5) and len(set(together.tolist())) == 3


@pytest.fixture
def data(sample_run, tmp_path):
    """The sample run's tokenizer and SFT checkpoint, with a small synthetic preference set."""
    root = tmp_path / "data"
    for name in ("tokenizer", "checkpoints/sft"):
        shutil.copytree(sample_run / "data" / name, root / name)
    rows = [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]], "labeler": "program",
             "ranked_at": "", "source": "synthetic", "kind": p["kind"], "split": p["split"]}
            for p in synthetic_set(0, 60, 10)]
    save_rankings(Store(str(root)), rows, {})
    assert len(pair_rows(load_rankings(Store(str(root))))) == len(rows) == 280
    return root


@pytest.mark.slow
def test_the_reward_model_learns_held_out_preferences_and_resumes_to_the_same_weights(data):
    common = ["--data", str(data), "--batch-size", "8", "--checkpoint-every", "20", "--eval-every", "20",
              "--lr", "3e-4"]
    assert main([*common, "--max-steps", "40", "--out", str(data / "straight")]) == 0
    assert main([*common, "--max-steps", "40", "--out", str(data / "resumed")]) == 0
    shutil.rmtree(data / "resumed" / "step-000040")  # as if killed after the checkpoint at step 20
    assert main([*common, "--max-steps", "40", "--out", str(data / "resumed")]) == 0
    straight, resumed = (load_reward_model(str(data / d)) for d in ("straight", "resumed"))
    for name, weight in straight["model"].state_dict().items():
        assert torch.equal(weight, resumed["model"].state_dict()[name]), name
    config = straight["config"]
    assert config["stage"] == "reward" and config["base_checkpoint"].endswith("checkpoints/sft/step-000300")
    assert config["pairs"] == {"train": 240, "held_out": 40, "too_long": 0}
    history = config["history"]
    assert history[0]["step"] == 0 and history[0]["pairwise_accuracy"] == 0.0  # a zero head ties every pair
    assert config["pairwise_accuracy"] >= 0.7 > 0.5  # held-out questions, after 40 steps of 8 pairs
    by_kind = config["accuracy_by_kind"]
    assert by_kind["answer_vs_refusal"] >= 0.8 and by_kind["refusal_vs_invention"] >= 0.8
    with pytest.raises(RuntimeError, match="score.weight"):  # a reward checkpoint is no chat model
        load_checkpoint(str(data / "straight"))
