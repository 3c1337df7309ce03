"""Pretraining throughput and quality: our GPT against a nanoGPT-style reference of the same size, side by side.

    .venv/bin/python -m bench.bench_pretrain [--depth 4] [--steps 60] [--data DIR]

Both models see the same batches of the bundled sample's token shards, read by training/data.TokenStream as
training/pretrain.py reads them (built under bench/out/data by `crawl2chat run --until token_shards` when --data is
not given), with the same AdamW settings. The reference is
nanoGPT's model (learned positions, LayerNorm with biases, GELU MLP, tied embeddings) run as nanoGPT runs it on a
CPU: fp32. Ours runs as training/pretrain.py does: bf16 autocast where the CPU has bf16 instructions (AVX512-BF16 or
AMX; fp32 elsewhere). Reported: training tokens/s, and validation bits per byte after the same tokens.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.common import OUT, save
from pipeline.storage import Store
from pipeline.token_io import TOKENS, load_tokenizer
from training.data import TokenStream, bytes_per_token
from training.model import GPT, GPTConfig
from training.pretrain import use_bf16


class NanoBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc, self.proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """nanoGPT's model.py, condensed: the reference."""

    def __init__(self, vocab: int, depth: int, width: int, heads: int, seq_len: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(NanoBlock(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def logits(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def forward(self, idx, targets):
        logits = self.logits(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def streams(data: Path, args) -> tuple[TokenStream, TokenStream, object]:
    """The train and validation streams training/pretrain.py reads, and the tokenizer."""
    store = Store(str(data))
    train, val = (TokenStream(store, None, split, args.seq_len, args.batch, seed=0) for split in ("train", "val"))
    return train, val, load_tokenizer(store)[0]


def train(model, stream: TokenStream, args, bf16: bool) -> float:
    """Seconds for `args.steps` steps (after 3 warm-up steps on other batches), from the stream's first batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(3):
        step(*stream.get(stream.batches_per_epoch - 1 - i))
    start = time.perf_counter()
    for i in range(args.steps):
        step(*stream.get(i % stream.batches_per_epoch, i // stream.batches_per_epoch))
    return time.perf_counter() - start


@torch.no_grad()
def val_bpb(model, val: TokenStream, token_bytes: np.ndarray) -> float:
    """Bits per byte over the whole validation split (special-token targets left out, as training/pretrain.py)."""
    nats, nbytes = 0.0, 0
    for i in range(val.batches_per_epoch):
        x, y = val.get(i)
        n = torch.from_numpy(token_bytes)[y]
        losses = F.cross_entropy(_logits(model, x).flatten(0, 1), y.flatten(), reduction="none")
        nats += float((losses * (n.flatten() > 0)).sum())
        nbytes += int(n.sum())
    return nats / math.log(2) / nbytes


def _logits(model, x):
    return model(x) if isinstance(model, GPT) else model.logits(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    data = args.data or OUT / "data"
    if not (data / TOKENS).exists():
        home = (OUT / "dagster_home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "assets_defs.cli", "run", "--until", "token_shards", "--data", str(data)],
                       check=True, env={**os.environ, "DAGSTER_HOME": str(home)})
    train_stream, val_stream, tok = streams(data, args)
    token_bytes = bytes_per_token(tok)
    bf16 = use_bf16("auto", torch.device("cpu"))
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=tok.n_vocab, depth=args.depth, seq_len=args.seq_len))
    torch.manual_seed(0)
    c = ours.config
    ref = NanoGPT(tok.n_vocab, args.depth, c.width, c.n_head, args.seq_len)
    tokens = args.steps * args.batch * args.seq_len
    t_ours = train(ours, train_stream, args, bf16)
    t_ref = train(ref, train_stream, args, False)
    bpb_ours, bpb_ref = val_bpb(ours, val_stream, token_bytes), val_bpb(ref, val_stream, token_bytes)
    rows = [{
        "benchmark": f"pretraining, depth {args.depth} (ours {ours.num_params() / 1e6:.1f}M, ref "
                     f"{sum(p.numel() for p in ref.parameters()) / 1e6:.1f}M params), {'bf16' if bf16 else 'fp32'} vs fp32",
        "reference": "nanoGPT-style model, fp32", "items_ours": tokens, "items_ref": tokens,
        "ours": tokens / t_ours, "ref": tokens / t_ref, "unit": "tokens/s", "ratio": t_ref / t_ours,
    }]
    save("pretrain", rows, val_bpb={"ours": bpb_ours, "reference": bpb_ref, "tokens": tokens + 3 * args.batch * args.seq_len},
         bf16=bf16)
    print(f"\nval bits/byte after {tokens:,} tokens: ours {bpb_ours:.3f}, reference {bpb_ref:.3f}")


if __name__ == "__main__":
    main()
