"""Supervised fine-tuning: the loss falls on assistant tokens only, and a killed run resumes to the same weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.sft import batch, main


def test_batch_pads_and_hides_everything_but_the_assistant_tokens():
    rendered = [([1, 2, 3, 4, 5], [0, 0, 1, 1, 0]), ([6, 7, 8], [0, 1, 1])]
    x, y = batch(rendered, torch.device("cpu"))
    assert x.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]]
    assert y.tolist() == [[-1, 3, 4, -1], [7, 8, -1, -1]]  # target i is token i + 1, kept where its mask is 1


@pytest.fixture
def data(sample_run, tmp_path):
    root = tmp_path / "data"
    for name in ("tokenizer", "sft_conversations", "search_index", "checkpoints/base"):
        shutil.copytree(sample_run / "data" / name, root / name)
    return root


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data, capsys):
    common = ["--data", str(data), "--batch-size", "4", "--checkpoint-every", "5", "--eval-every", "100"]
    assert main([*common, "--max-steps", "10", "--out", str(data / "straight")]) == 0
    assert main([*common, "--max-steps", "10", "--out", str(data / "resumed")]) == 0  # writes 5 and 10
    shutil.rmtree(data / "resumed" / "step-000010")  # as if killed after the checkpoint at step 5
    assert main([*common, "--max-steps", "10", "--out", str(data / "resumed")]) == 0
    straight, resumed = (load_checkpoint(str(data / d), 10) for d in ("straight", "resumed"))
    for name, weight in straight["model"].state_dict().items():
        assert torch.equal(weight, resumed["model"].state_dict()[name]), name
    config = straight["config"]
    assert config["base_checkpoint"].endswith("checkpoints/base/step-000200") and config["stage"] == "sft"
    assert [h["step"] for h in config["history"]] == list(range(1, 11)) == [h["step"] for h in resumed["config"]["history"]]
