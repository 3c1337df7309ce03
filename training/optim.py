"""Muon for the hidden matrices, AdamW for the rest (Keller Jordan's Muon, as nanochat and modded-nanogpt use it).

Muon takes SGD-momentum's update of a weight matrix and replaces it by the nearest semi-orthogonal matrix (a few
Newton-Schulz iterations), so every direction of the update moves at the same rate. It suits the 2D weights inside
the blocks; embeddings, the output head and norm gains stay with AdamW.
"""

from __future__ import annotations

import torch


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximation of U V^T for g = U S V^T: the quintic Newton-Schulz iteration with Muon's coefficients, which
    trade exactness (singular values end in ~[0.7, 1.2]) for speed."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float() / (g.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                # scaled so that the update's RMS does not shrink for wide matrices (Muon's aspect-ratio factor)
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(orthogonalize(update).to(p.dtype), alpha=-group["lr"] * scale)


class MuonAdamW:
    """Muon on `matrices`, AdamW on `others`, stepped together; one state dict, as checkpoints expect.

    `param_groups` lists both optimizers' groups; each carries `lr_scale`, so a schedule sets
    group["lr"] = lr * group["lr_scale"].
    """

    def __init__(self, matrices, others: list[dict], lr: float, muon_lr: float, fused: bool = False) -> None:
        self.adamw = torch.optim.AdamW(others, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)
        self.muon = Muon(matrices, lr=muon_lr)
        for group in self.adamw.param_groups:
            group["lr_scale"] = 1.0
        for group in self.muon.param_groups:
            group["lr_scale"] = muon_lr / lr

    @property
    def param_groups(self) -> list[dict]:
        return [*self.adamw.param_groups, *self.muon.param_groups]

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])
