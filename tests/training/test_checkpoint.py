"""Checkpoints record the tokenizer they were trained with, and refuse to be loaded for another."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from training.checkpoint import TokenizerMismatch, load_checkpoint, save_checkpoint
from training.model import GPT, GPTConfig

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def saved(tmp_path) -> tuple[str, GPT]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, depth=1, seq_len=16))
    save_checkpoint(str(tmp_path / "ckpt"), 3, model, None, {"step": 3}, {"train_loss": 1.5}, tokenizer_sha256=SHA_A)
    return str(tmp_path / "ckpt"), model


def test_a_checkpoint_records_its_tokenizer_and_refuses_another(saved):
    root, model = saved
    loaded = load_checkpoint(root, tokenizer_sha256=SHA_A)
    assert loaded["config"]["tokenizer_sha256"] == SHA_A and loaded["config"]["train_loss"] == 1.5
    assert torch.equal(loaded["model"].lm_head.weight, model.lm_head.weight)
    with pytest.raises(TokenizerMismatch) as refused:
        load_checkpoint(root, tokenizer_sha256=SHA_B)
    assert f"checkpoint {root}/step-000003 was trained with tokenizer sha256 {SHA_A}" in str(refused.value)
    assert f"the tokenizer in use has sha256 {SHA_B}" in str(refused.value)
    assert load_checkpoint(root)["step"] == 3, "without a tokenizer to compare, any checkpoint loads"


def test_a_checkpoint_from_before_the_sha256_was_recorded_loads_with_a_warning(saved, caplog):
    root, model = saved
    config_path = Path(root) / "step-000003" / "config.json"
    config = json.loads(config_path.read_text())
    del config["tokenizer_sha256"]
    config_path.write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="training.checkpoint"):
        loaded = load_checkpoint(root, tokenizer_sha256=SHA_B)
    assert torch.equal(loaded["model"].lm_head.weight, model.lm_head.weight)
    assert f"checkpoint {root}/step-000003 records no tokenizer sha256" in caplog.text and SHA_B in caplog.text
