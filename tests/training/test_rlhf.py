"""RLHF against a reward model: the guard's rules on made-up histories, then real runs on the sample's chat model:
a deliberately gameable reward (it pays for one word) that the guard stops, and the trained reward model that it
lets run."""

from __future__ import annotations

import shutil
from argparse import Namespace

import pytest
import torch

from pipeline.token_io import load_tokenizer
from pipeline.storage import Store
from training.checkpoint import committed_steps, load_checkpoint, read_config
from training.rlhf import guard, kept_accuracy, main, parse_args, repetition, train

LIMITS = Namespace(eval_every=2, max_accuracy_drop=0.15, max_degenerate=0.3, max_length_growth=2.0)


def _history(rewards, tokens, degenerate, sums, identity=(0.5, 0.5, 0.5)) -> list[dict]:
    """Steps 1.. with the given per-step figures; an evaluation at step 0 and every second step, with the held-out
    accuracy on sums and identity questions."""
    def evaluation(i: int) -> dict:
        return {"accuracy": {"identity": identity[i], "sums": sums[i]}, "pass_at_1": (identity[i] + sums[i]) / 2}

    history = [{"step": 0, **evaluation(0)}]
    for i, (r, t, d) in enumerate(zip(rewards, tokens, degenerate), start=1):
        history.append({"step": i, "rm_reward": r, "reply_tokens": t, "degenerate": d})
        if i % 2 == 0:
            history[-1].update(evaluation(i // 2))
    return history


def test_repetition_is_the_share_of_repeated_word_trigrams():
    assert repetition("the cat sat on the mat") == 0.0
    assert repetition("the the the the the the") == pytest.approx(3 / 4)
    assert repetition("short reply") == 0.0


def test_the_guard_fires_when_the_reward_rises_while_accuracy_falls_or_replies_degenerate():
    honest = _history([0.1, 0.2, 0.3, 0.4], [20, 22, 21, 23], [0, 0, 0, 0], [0.5, 0.5, 0.55])
    assert guard(honest, LIMITS) is None
    assert guard(honest[:3], LIMITS) is None  # one window: nothing to compare yet
    gamed = _history([0.1, 0.2, 0.8, 0.9], [20, 22, 21, 23], [0, 0, 0, 0], [0.5, 0.45, 0.3], [0.5, 0.6, 0.6])
    assert guard(gamed, LIMITS) == ("the reward model's score rose (0.15 -> 0.85) while held-out sums accuracy fell "
                                    "(0.50 -> 0.30)")  # one kind of question is enough, whatever the mean did
    falling_reward = _history([0.9, 0.8, 0.2, 0.1], [20, 22, 21, 23], [0, 0, 0, 0], [0.5, 0.45, 0.3])
    assert guard(falling_reward, LIMITS) is None  # accuracy fell, but nothing was being gamed
    collapsed = _history([0.9, 0.8, 0.2, 0.1], [20, 22, 21, 23], [0, 0, 0, 0], [0.5, 0.2, 0.0], [0.5, 0.3, 0.1])
    assert guard(collapsed, LIMITS) == "held-out accuracy fell (0.50 -> 0.05)"  # whatever the reward did
    looping = _history([0.1, 0.2, 0.3, 0.4], [20, 22, 21, 23], [0, 0, 0.25, 0.5], [0.5, 0.5, 0.5])
    assert guard(looping, LIMITS) == "38% of the last 2 steps' replies repeat themselves"
    longer = _history([0.1, 0.2, 0.3, 0.4], [20, 20, 40, 44], [0, 0, 0, 0], [0.5, 0.5, 0.5])
    assert guard(longer, LIMITS) == "replies grew from 20 to 42 tokens"


def test_weights_to_fall_back_to_kept_every_kind_of_questions_accuracy():
    start = {"sums": 0.2, "identity": 0.75}
    assert kept_accuracy(start, {"sums": 0.1, "identity": 0.8}, 0.15)
    assert not kept_accuracy(start, {"sums": 0.0, "identity": 0.9}, 0.15)  # better on average, but sums fell


def test_settings_are_checked_when_the_run_starts():
    for bad in (["--samples", "1"], ["--kl", "-1"], ["--clip", "0"], ["--max-steps", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--data", "d", *bad])


@pytest.fixture
def data(sample_run, tmp_path):
    root = tmp_path / "data"
    for name in ("tokenizer", "preference_rankings", "search_index", "checkpoints/sft", "checkpoints/reward"):
        shutil.copytree(sample_run / "data" / name, root / name)
    return root


@pytest.mark.slow
def test_the_guard_stops_a_run_that_games_a_reward_paying_for_one_word(data):
    tokenizer, _ = load_tokenizer(Store(str(data)))

    def pays_for_the(prompts, replies):  # deliberately gameable: "the the the" is the best reply there is
        return [float(tokenizer.decode(r).lower().split().count("the")) for r in replies]

    args = parse_args(["--data", str(data), "--max-steps", "40", "--eval-every", "5", "--checkpoint-every", "5",
                       "--lr", "3e-4", "--kl", "0"])  # no KL to hold it back
    assert train(args, reward_fn=pays_for_the) == 0
    config = read_config(args.out)
    fired = config["guard"]
    assert fired["fired"] and fired["at_step"] < 40 and fired["reason"], config["history"][-6:]
    assert config["step"] == fired["at_step"] == committed_steps(args.out)[-1]  # it stopped there
    history = [h["rm_reward"] for h in config["history"] if "rm_reward" in h]
    assert sum(history[-5:]) > sum(history[:5])  # the gameable reward was being gamed
    restored = fired["restored_step"]
    saved = load_checkpoint(args.out)["model"].state_dict()
    before = load_checkpoint(args.out, restored)["model"] if restored else load_checkpoint(
        str(data / "checkpoints" / "sft"))["model"]
    for name, weight in before.state_dict().items():  # the last weights the guard passed, not the gamed ones
        assert torch.equal(weight, saved[name]), name
    assert main(["--data", str(data), "--max-steps", "60"]) == 0  # a rerun does not go on past the guard
    assert committed_steps(args.out)[-1] == fired["at_step"]


@pytest.mark.slow
def test_rlhf_against_the_trained_reward_model_runs_its_steps_with_the_guard_quiet(data):
    assert main(["--data", str(data), "--max-steps", "10", "--eval-every", "5", "--checkpoint-every", "5"]) == 0
    config = read_config(str(data / "checkpoints" / "rlhf"))
    assert config["step"] == 10 and config["guard"] == {"fired": False, "reason": None, "at_step": 10,
                                                        "restored_step": None}
    assert config["reward_checkpoint"].endswith("checkpoints/reward/step-000030")  # tests/data/sample_run.yaml
    steps = [h for h in config["history"] if "rm_reward" in h]
    assert len(steps) == 10 and all(h["kl"] == pytest.approx(h["kl"]) for h in steps)  # numbers, not NaN
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the first replies come from the start's weights
    assert set(config["accuracy"]) == {"identity", "sums", "unknown"}
