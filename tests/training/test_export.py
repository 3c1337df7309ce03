"""The Hugging Face export: transformers loads it as a Llama model whose logits match ours, with our tokenizer."""

from __future__ import annotations

import pytest
import torch

from pipeline.tokenizer import Tokenizer
from training.export import export_hf
from training.model import GPT, GPTConfig

TEXT = "The Debian project is an association of individuals who made common cause to create a free operating system. "


def test_transformers_loads_the_export_with_matching_logits_and_ids(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = Tokenizer.train([TEXT * 20, "Ünïcödé 🙂 text, numbers 12345."], vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, depth=2, seq_len=64)).eval()
    with torch.no_grad():  # a trained-looking model: norms away from 1, so a wrong mapping shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    out = export_hf(model, tmp_path / "hf", tok.to_files(), tok.eot_id)

    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    x = torch.randint(0, tok.n_vocab, (3, 48))
    with torch.no_grad():
        assert torch.allclose(model(x), hf(x).logits, atol=1e-4)

    hf_tok = AutoTokenizer.from_pretrained(out)
    text = TEXT + "<|im_end|> 🙂"
    assert hf_tok(text)["input_ids"] == tok.encode(text), "a literal special string stays text in the export too"
    assert hf_tok.decode(tok.encode(text)) == text
    assert hf_tok.eos_token_id == tok.eot_id


@pytest.mark.parametrize("extra", [{"smear_keys": True}, {"qk_conv": 3}])
def test_a_model_llama_cannot_compute_is_refused_not_exported_wrong(tmp_path, extra):
    model = GPT(GPTConfig(vocab_size=300, depth=2, seq_len=64, **extra))
    with pytest.raises(ValueError, match=next(iter(extra))):
        export_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
