"""`crawl2chat generate` and `crawl2chat export` on a checkpoint made with the sample's tokenizer."""

from __future__ import annotations

import shutil

import pytest
import torch

from assets_defs.cli import main
from pipeline.storage import Store
from pipeline.token_io import load_tokenizer
from training.checkpoint import save_checkpoint
from training.model import GPT, GPTConfig


@pytest.fixture
def data_root(tmp_path, sample_run):
    root = tmp_path / "data"
    shutil.copytree(sample_run / "data" / "tokenizer", root / "tokenizer")
    tok, sha = load_tokenizer(Store(str(root)))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, depth=1, seq_len=64))
    save_checkpoint(str(root / "checkpoints" / "base"), 3, model, None, {}, {}, tokenizer_sha256=sha)
    return root


@pytest.mark.slow
def test_generate_streams_a_completion_reproducibly(data_root, capsys, monkeypatch):
    monkeypatch.chdir(data_root.parent)
    args = ["generate", "--prompt", "Debian is", "--max-new-tokens", "12", "--seed", "5", "--data", str(data_root)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "step 3" in first and "Debian is" in first and len(first.split("Debian is", 1)[1].strip()) > 0
    assert main(args) == 0
    assert capsys.readouterr().out == first


@pytest.mark.slow
def test_generate_stops_where_a_stop_text_appears(data_root, capsys, monkeypatch):
    monkeypatch.chdir(data_root.parent)
    args = ["generate", "--prompt", "Debian is", "--max-new-tokens", "24", "--seed", "5", "--data", str(data_root)]
    assert main(args) == 0
    full = capsys.readouterr().out.split("Debian is", 1)[1].rstrip("\n")
    stop = full[len(full) // 2:][:3]  # a piece of the second half of the same completion
    assert main([*args, "--stop", stop]) == 0
    stopped = capsys.readouterr().out.split("Debian is", 1)[1].rstrip("\n")
    assert stopped == full[:full.find(stop)] and len(stopped) < len(full), (full, stop, stopped)


@pytest.mark.slow
def test_export_writes_a_model_transformers_loads(data_root, tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--out", str(tmp_path / "hf"), "--data", str(data_root)]) == 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf").config.num_hidden_layers == 1


def test_a_checkpoint_from_another_tokenizer_is_refused(data_root, capsys, monkeypatch):
    monkeypatch.chdir(data_root.parent)
    tok, _ = load_tokenizer(Store(str(data_root)))
    save_checkpoint(str(data_root / "checkpoints" / "base"), 4, GPT(GPTConfig(vocab_size=tok.n_vocab, depth=1)),
                    None, {}, {}, tokenizer_sha256="0" * 64)
    assert main(["generate", "--prompt", "x", "--data", str(data_root)]) == 2
    assert f"was trained with tokenizer sha256 {'0' * 64}" in " ".join(capsys.readouterr().out.split())
