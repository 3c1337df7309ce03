"""A decoder-only GPT whose size follows one dial, depth, and whose layout is Llama's, so it exports to
transformers' LlamaForCausalLM without conversion tricks.

Choices and why:
- RoPE instead of learned positions (Su et al. 2021): no position table to outgrow, and generation with a KV cache
  only needs the position of the new token.
- RMSNorm before each block, no biases anywhere (as Llama and nanochat): fewer parameters, same quality.
- SwiGLU MLP (Shazeer 2020), hidden size ~8/3 of the width rounded to 64: the best MLP at equal parameters.
- Untied input and output embeddings: Llama's default; the head's weights are free to specialise.

Width = 64 x depth and heads of 64 dimensions (nanochat's dial): depth 2 is a CPU toy, depth 12 is GPT-2 small's
width (~124M with a 50k vocabulary), depth 16 ~ 350M, depth 24 ~ 1B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    depth: int = 4
    seq_len: int = 256
    head_dim: int = 64
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False  # the output head shares the input embedding (GPT-2's choice)
    smear_keys: bool = False  # each head's keys mix in the previous token's key (see Attention)
    qk_conv: int = 0  # taps of a causal depthwise convolution over time on queries and keys, 0 = none (see Attention)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "depth", "seq_len", "head_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.head_dim % 2:
            raise ValueError(f"GPTConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if not isinstance(self.qk_conv, int) or self.qk_conv < 0 or self.qk_conv == 1:
            raise ValueError(f"GPTConfig.qk_conv must be 0 (none) or an int >= 2 (taps), got {self.qk_conv!r}")

    @property
    def width(self) -> int:
        return 64 * self.depth

    @property
    def n_head(self) -> int:
        return max(1, self.width // self.head_dim)

    @property
    def mlp_hidden(self) -> int:
        return 64 * ((8 * self.width // 3 + 63) // 64)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        return cls(**d)


def rope_tables(config: GPTConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for `positions` (any shape), shaped (*positions.shape, head_dim), Llama's half-split layout."""
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin: (B or 1, 1, T, D). Rotates the two halves of each head (transformers' rotate_half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class KVCache:
    """Keys and values of every layer for a batch, preallocated to `max_len`; `lengths[b]` tokens of row b are filled."""

    def __init__(self, config: GPTConfig, batch: int, max_len: int, device, dtype) -> None:
        shape = (config.depth, batch, config.n_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # each row's last key before RoPE, per layer: the next step's first key smears it in
        self.last_k = torch.zeros((config.depth, batch, config.n_head, config.head_dim), device=device, dtype=dtype)
        # with qk_conv, each row's last qk_conv - 1 queries and keys before the convolution, per layer
        self.tail = torch.zeros((config.depth, batch, 2, config.n_head, max(config.qk_conv - 1, 0), config.head_dim),
                                device=device, dtype=dtype)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_len = max_len


class Attention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        inner = config.n_head * config.head_dim
        self.q_proj = nn.Linear(config.width, inner, bias=False)
        self.k_proj = nn.Linear(config.width, inner, bias=False)
        self.v_proj = nn.Linear(config.width, inner, bias=False)
        self.o_proj = nn.Linear(inner, config.width, bias=False)
        if config.smear_keys:  # Olsson et al. 2022's smeared keys: k_t + sigmoid(a_h) (k_{t-1} - k_t) per head, so
            # one layer can match "the token before" and a small model learns to copy from its context (induction)
            # in hundreds of steps instead of the thousands a previous-token head takes to form (BENCHMARKS.md)
            self.smear = nn.Parameter(torch.zeros(config.n_head))
        if config.qk_conv:  # Primer's multi-dconv-head attention (So et al. 2021): every channel of a query or key is
            # a learned mix of that channel at the last qk_conv positions, so a key can hold the token before it in
            # some channels and the one before that in others, and one layer matches two tokens of context, not one:
            # a copy no longer jumps to another place the last token occurs (BENCHMARKS.md). Taps [q or k, head,
            # channel, lag]; queries start as themselves, keys as half their own and half the previous (smear_keys)
            taps = torch.zeros(2, config.n_head, config.head_dim, config.qk_conv)
            taps[0, ..., 0] = 1.0
            taps[1, ..., :2] = 0.5
            self.qk_taps = nn.Parameter(taps)

    def forward(self, x, cos, sin, layer: int, cache: KVCache | None, rows: torch.Tensor | None):
        B, T, _ = x.shape
        H, D = self.config.n_head, self.config.head_dim
        q, k, v = (proj(x).view(B, T, H, D).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.config.smear_keys:
            k = self._smear(k, layer, cache, rows)
        if self.config.qk_conv:
            q, k = self._convolve(torch.stack([q, k]), layer, cache, rows)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = self._cached(q, k, v, layer, cache, rows)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))

    def _smear(self, k, layer: int, cache: KVCache | None, rows: torch.Tensor | None):
        """Keys (B, H, T, D) before RoPE, each mixed with its predecessor's; a row's first token has none."""
        first = torch.zeros_like(k[:, :, :1])
        if cache is not None:
            rows = _rows(rows)
            started = (cache.lengths[rows] > 0)[:, None, None, None]
            first = torch.where(started, cache.last_k[layer, rows][:, :, None].to(k.dtype), first)
            cache.last_k[layer, rows] = k[:, :, -1].to(cache.last_k.dtype)
        prev = torch.cat([first, k[:, :, :-1]], dim=2)
        gate = torch.sigmoid(self.smear).to(k.dtype)[None, :, None, None]
        return k + gate * (prev - k)

    def _convolve(self, qk, layer: int, cache: KVCache | None, rows: torch.Tensor | None):
        """Queries and keys stacked (2, B, H, T, D) before RoPE, each the taps' mix of its last qk_conv positions
        (zeros before a row's first token); with a cache, the positions before this step come from cache.tail."""
        lags = self.config.qk_conv - 1
        before = qk.new_zeros((*qk.shape[:3], lags, qk.shape[-1]))
        if cache is not None:
            rows = _rows(rows)
            started = (cache.lengths[rows] > 0)[None, :, None, None, None]
            before = torch.where(started, cache.tail[layer, rows].transpose(0, 1).to(qk.dtype), before)
        padded = torch.cat([before, qk], dim=3)
        if cache is not None:
            cache.tail[layer, rows] = padded[:, :, :, -lags:].transpose(0, 1).to(cache.tail.dtype)
        T = qk.shape[3]
        taps = self.qk_taps.to(qk.dtype)[:, None, :, None, :, :]  # (2, 1, H, 1, D, taps)
        return sum(taps[..., lag] * padded[:, :, :, lags - lag:lags - lag + T] for lag in range(lags + 1))

    def _cached(self, q, k, v, layer: int, cache: KVCache, rows: torch.Tensor | None):
        """Writes this step's keys/values at each row's length, then attends over everything up to them. With rows
        None (every row of the cache, in order) the keys are read as a view: gathering them copied the whole cache
        every step and layer, half of a decoding step's time at 32 rows (bench/BENCHMARKS.md)."""
        B, T = q.shape[0], q.shape[2]
        start = cache.lengths[_rows(rows)]  # (B,)
        slots = start[:, None] + torch.arange(T, device=q.device)  # (B, T)
        written = torch.arange(B, device=q.device) if rows is None else rows
        cache.k[layer, written[:, None], :, slots] = k.transpose(1, 2)
        cache.v[layer, written[:, None], :, slots] = v.transpose(1, 2)
        end = int(slots.max()) + 1
        keys, values = cache.k[layer, _rows(rows), :, :end], cache.v[layer, _rows(rows), :, :end]
        # query t of row b sees key j when j <= start_b + t: causal inside the step, everything before it
        mask = torch.arange(end, device=q.device)[None, None, :] <= slots[:, :, None]  # (B, T, end)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None])


def _rows(rows: torch.Tensor | None) -> torch.Tensor | slice:
    """An index of the cache's rows: the given ones, or all of them as a slice (a view, not a copy)."""
    return slice(None) if rows is None else rows


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.width, config.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(config.width, config.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(config.mlp_hidden, config.width, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.width, eps=config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = nn.RMSNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, layer, cache, rows):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, layer, cache, rows)
        return x + self.mlp(self.post_attention_layernorm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.width)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.RMSNorm(config.width, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
        self.apply(self._init)
        if config.tie_embeddings:  # copying a token then needs no learned map back to the vocabulary: small models
            self.lm_head.weight = self.embed_tokens.weight  # learn to copy from their context (BENCHMARKS.md)
        for layer in self.layers:  # residual projections start at zero (nanochat): each block starts as the identity
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):  # -0.04 val bpb at 200 steps vs GPT-2's scaled init
                nn.init.zeros_(proj.weight)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        rows: torch.Tensor | None = None,
        reduction: str = "mean",
    ):
        """Logits (B, T, V), or the cross-entropy when `targets` are given (-1 targets are ignored): its mean over
        the targets, or with reduction="sum" its sum (a distributed step divides by the global count).

        With a cache, `idx` continues rows `rows` of it (all rows when None) from their current lengths.
        """
        logits = self.lm_head(self.hidden(idx, cache, rows))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,
                               reduction=reduction)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, rows: torch.Tensor | None = None):
        """The last layer's normed states (B, T, width): what the head reads, and a reward model's scalar head."""
        B, T = idx.shape
        if cache is None:
            if T > self.config.seq_len:
                raise ValueError(f"sequence of {T} tokens is longer than seq_len={self.config.seq_len}")
            positions = torch.arange(T, device=idx.device)[None]
        else:
            if rows is None and B != cache.k.shape[1]:
                raise ValueError(f"{B} rows for a cache of {cache.k.shape[1]}: name the rows this step continues")
            positions = cache.lengths[_rows(rows)][:, None] + torch.arange(T, device=idx.device)
            if int(positions.max()) >= cache.max_len:
                raise ValueError(f"the KV cache holds {cache.max_len} tokens; this step needs {int(positions.max()) + 1}")
        cos, sin = rope_tables(self.config, positions)
        cos, sin = cos[:, None].to(self.embed_tokens.weight.dtype), sin[:, None].to(self.embed_tokens.weight.dtype)
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, i, cache, rows)
        if cache is not None:
            cache.lengths[_rows(rows)] += T
        return self.norm(x)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs a token (forward + backward): 6 x matmul parameters + attention (PaLM appendix B)."""
        matmul = self.num_params() - self.embed_tokens.weight.numel()
        if self.config.tie_embeddings:  # counted once in num_params, but the head is a matmul all the same
            matmul += self.lm_head.weight.numel()
        return 6 * matmul + 12 * self.config.depth * self.config.width * self.config.seq_len
