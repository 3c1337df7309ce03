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
