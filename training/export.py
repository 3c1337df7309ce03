"""Export to a Hugging Face model directory that transformers loads as LlamaForCausalLM.

Our GPT already has Llama's layout (pre-RMSNorm, SwiGLU, RoPE in the half-split convention, no biases, untied
head), so the export renames weights (a "model." prefix) and writes a LlamaConfig; nothing is permuted.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from training.model import GPT

SPECIAL_TOKENS_MAP = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}


def llama_config(model: GPT) -> dict:
    """Llama's config for `model`; ValueError for a model Llama cannot compute (smeared keys, a q/k convolution):
    transformers would load it without those weights, warn, and give other logits."""
    c = model.config
    extras = [name for name in ("smear_keys", "qk_conv") if getattr(c, name)]
    if extras:
        raise ValueError(f"this model uses {', '.join(extras)}, which LlamaForCausalLM does not have: it does not "
                         "export to transformers (train without them to export)")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.width,
        "intermediate_size": c.mlp_hidden,
        "num_hidden_layers": c.depth,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in model.state_dict().items():
        key = name if name.startswith("lm_head.") else f"model.{name}"
        out[key] = tensor.detach().to("cpu", torch.float32).contiguous()
    return out


def export_hf(model: GPT, out_dir: str | Path, tokenizer_files: dict[str, bytes] | None = None, eot_id: int | None = None) -> Path:
    """Writes config.json, model.safetensors and, given the tokenizer's files, tokenizer.json and its config."""
    out = Path(out_dir)
    config = llama_config(model)
    out.mkdir(parents=True, exist_ok=True)
    if eot_id is not None:
        config |= {"bos_token_id": eot_id, "eos_token_id": eot_id}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    save_file(hf_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_files is not None:
        (out / "tokenizer.json").write_bytes(tokenizer_files["tokenizer.json"])
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": model.config.seq_len,
            # a literal "<|im_end|>" in text stays text, as in our tokenizer (see pipeline/tokenizer.py)
            "split_special_tokens": True,
            **SPECIAL_TOKENS_MAP,
        }, indent=1))
        (out / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=1))
    return out
