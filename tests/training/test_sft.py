"""Supervised fine-tuning: the loss falls on assistant tokens only, a killed run resumes to the same weights, and
two processes under torchrun take the steps of one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import run_module

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
    for name in ("tokenizer", "token_shards", "sft_conversations", "search_index", "checkpoints/base"):
        shutil.copytree(sample_run / "data" / name, root / name)
    return root


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data, capsys):
    common = ["--data", str(data), "--batch-size", "4", "--checkpoint-every", "5", "--eval-every", "100",
              "--eval-items", "1",  # each checkpoint evaluates: one question a source keeps the test quick
              "--text-rows", "2", "--text-seq-len", "64"]  # quoting text rows too, drawn by the step
    assert main([*common, "--max-steps", "10", "--out", str(data / "straight")]) == 0
    assert main([*common, "--max-steps", "10", "--out", str(data / "resumed")]) == 0  # writes 5 and 10
    shutil.rmtree(data / "resumed" / "step-000010")  # as if killed after the checkpoint at step 5
    assert main([*common, "--max-steps", "10", "--out", str(data / "resumed")]) == 0
    straight, resumed = (load_checkpoint(str(data / d), 10) for d in ("straight", "resumed"))
    for name, weight in straight["model"].state_dict().items():
        assert torch.equal(weight, resumed["model"].state_dict()[name]), name
    config = straight["config"]
    assert config["base_checkpoint"].endswith("checkpoints/base/step-000200") and config["stage"] == "sft"
    assert isinstance(config["icl_gain"], float)  # whether fine-tuning kept the base model's copying
    assert [h["step"] for h in config["history"]] == list(range(1, 11)) == [h["step"] for h in resumed["config"]["history"]]


def test_sft_refuses_a_base_or_resume_checkpoint_of_another_tokenizer_of_the_same_size(two_tokenizers, chat_root,
                                                                                        tmp_path):
    (root_a, sha_a), (root_b, sha_b) = (chat_root(tmp_path / n, t) for n, t in zip("ab", two_tokenizers))
    out = tmp_path / "sft"
    common = ["--out", str(out), "--batch-size", "2", "--checkpoint-every", "1", "--eval-items", "1"]
    assert main(["--data", root_b, *common, "--max-steps", "1"]) == 0  # an SFT run under tokenizer b
    assert load_checkpoint(str(out))["config"]["tokenizer_sha256"] == sha_b
    # the store's tokenizer retrained (a, of the same size: the weights would load): resuming is refused
    with pytest.raises(SystemExit) as refused:
        main(["--data", root_a, *common, "--max-steps", "2"])
    assert f"{out}/step-000001" in str(refused.value)
    assert sha_a in str(refused.value) and sha_b in str(refused.value)
    # and so is starting from a base checkpoint trained with b
    with pytest.raises(SystemExit) as refused:
        main(["--data", root_a, "--base", f"{root_b}/checkpoints/base", *common, "--out", str(tmp_path / "other")])
    assert f"{root_b}/checkpoints/base/step-000001" in str(refused.value)
    assert sha_a in str(refused.value) and sha_b in str(refused.value)
    # under its own tokenizer the run resumes
    assert main(["--data", root_b, *common, "--max-steps", "2"]) == 0
    assert load_checkpoint(str(out))["step"] == 2


def test_only_items_with_an_answer_are_scored_and_every_source_is():
    from training.sft import scorable

    items = [{"source": "imported", "answer": None}, {"source": "gsm8k", "answer": "42"},
             {"source": "imported", "answer": ""}, {"source": "gsm8k", "answer": "7"},
             {"source": "gsm8k", "answer": "8"}, {"source": "identity", "answer": "crawl2chat"},
             {"source": "unknown", "answer": "I don't know"}]
    assert [it["source"] for it in scorable(items, 2)] == ["gsm8k", "gsm8k", "identity", "unknown"]


def test_two_processes_take_the_steps_of_one_with_twice_the_batch(two_tokenizers, chat_root, tmp_path):
    root, _ = chat_root(tmp_path / "data", two_tokenizers[0])
    common = ["--data", root, "--max-steps", "3", "--checkpoint-every", "3", "--eval-every", "3", "--eval-items", "1",
              "--lr", "3e-3"]
    run_module("training.sft", *common, "--out", str(tmp_path / "one"), "--batch-size", "4")
    run_module("training.sft", *common, "--out", str(tmp_path / "two"), "--batch-size", "2", nproc=2)
    one, two = (load_checkpoint(str(tmp_path / name)) for name in ("one", "two"))
    assert (one["config"]["world_size"], two["config"]["world_size"]) == (1, 2)
    losses = [[h["train_loss"] for h in ckpt["config"]["history"]] for ckpt in (one, two)]
    assert len(set(losses[0])) == 3  # three different batches, and the model moved
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for name, weight in one["model"].state_dict().items():
        # Adam divides by the root of tiny second moments: the all-reduce's other summation order moves a weight
        # whose gradients are near zero by up to ~1e-5 (one in 65,536 here), every other one by far less
        torch.testing.assert_close(two["model"].state_dict()[name], weight, rtol=1e-4, atol=1e-5)
    base = load_checkpoint(f"{root}/checkpoints/base")["model"].state_dict()
    assert any(not torch.equal(base[name], w) for name, w in one["model"].state_dict().items())
