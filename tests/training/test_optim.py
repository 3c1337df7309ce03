"""Muon: its Newton-Schulz step makes an update near-orthogonal, and it trains a model."""

from __future__ import annotations

import torch

from training.model import GPT, GPTConfig
from training.optim import MuonAdamW, orthogonalize


def test_orthogonalize_flattens_the_singular_values():
    torch.manual_seed(0)
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-1, 1, 32))  # condition number ~100, like a gradient
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.3, s
    assert orthogonalize(g).shape == g.shape and orthogonalize(g.T).shape == g.T.shape


def test_muon_adamw_overfits_a_batch_and_its_state_round_trips():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, depth=2, seq_len=32))
    hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("layers.")]
    others = [{"params": [p for n, p in model.named_parameters() if not (p.dim() == 2 and n.startswith("layers."))]}]
    opt = MuonAdamW(hidden, others, lr=3e-3, muon_lr=0.02)
    assert {g["lr_scale"] for g in opt.param_groups} == {1.0, 0.02 / 3e-3}
    batch = torch.randint(0, 64, (2, 17))
    for _ in range(100):
        loss = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
    again = MuonAdamW(hidden, others, lr=3e-3, muon_lr=0.02)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.muon.state[hidden[0]]["momentum_buffer"], opt.muon.state[hidden[0]]["momentum_buffer"])


def test_under_muon_attention_queries_and_keys_stay_with_adamw_unless_asked():
    """Under Muon a small model's attention never learns to copy (BENCHMARKS.md), so q/k go to AdamW by default."""
    from training.pretrain import make_optimizer, parse_args

    model = GPT(GPTConfig(vocab_size=64, depth=2, seq_len=32))
    names = {id(p): n for n, p in model.named_parameters()}
    for flag, muon_qk in (([], False), (["--qk-optimizer", "muon"], True)):
        opt = make_optimizer(model, parse_args(["--data", "d", "--optimizer", "muon", *flag]), torch.device("cpu"))
        on_muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
        on_adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
        assert not on_muon & on_adamw and on_muon | on_adamw == set(names.values())
        assert ("layers.0.self_attn.q_proj.weight" in on_muon) == muon_qk
        assert ("layers.1.self_attn.k_proj.weight" in on_muon) == muon_qk
        assert {"layers.0.self_attn.v_proj.weight", "layers.1.mlp.down_proj.weight"} <= on_muon
        assert {"embed_tokens.weight", "lm_head.weight"} <= on_adamw


def test_qk_conv_taps_are_neither_decayed_nor_given_to_muon():
    """The taps start as an identity-like mix (training/model.py): decay would pull them to zero, Muon would
    orthogonalise a (2, heads, 64, taps) tensor as if it were a matrix."""
    from training.pretrain import make_optimizer, parse_args

    model = GPT(GPTConfig(vocab_size=64, depth=2, seq_len=32, qk_conv=3))
    names = {id(p): n for n, p in model.named_parameters()}
    for optimizer in ("muon", "adamw"):
        opt = make_optimizer(model, parse_args(["--data", "d", "--optimizer", optimizer]), torch.device("cpu"))
        adamw = opt.adamw if optimizer == "muon" else opt
        undecayed = {names[id(p)] for g in adamw.param_groups if g["weight_decay"] == 0 for p in g["params"]}
        assert {"layers.0.self_attn.qk_taps", "layers.1.self_attn.qk_taps"} <= undecayed
        if optimizer == "muon":
            assert not any(names[id(p)].endswith("qk_taps") for g in opt.muon.param_groups for p in g["params"])
