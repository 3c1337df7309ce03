"""Sampling from a GPT one token at a time, a batch of prompts at once, with a KV cache.

The engine works on token ids only (nanochat's rule: it knows nothing about tokenization). Each prompt is prefilled
into its own row of the cache, so prompts of different lengths need no padding; then every step feeds one token a
row. `generate` streams: it yields, each step, the new token of every row (None for a row that already stopped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from training.model import GPT, KVCache

OnToken = Callable[[int, list[int]], Sequence[int] | None | Future]  # (row, its tokens so far) -> tokens to feed it,
# None to end it, or a Future of either (a tool running on a pool: training/chat.py's ToolCalls)


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    stop_tokens: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def sample_next(logits: torch.Tensor, sampling: Sampling,
                generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
    """One token a row from (B, V) logits: greedy at temperature 0, else top-k then top-p (nucleus) sampling; with
    a list of generators, row b draws from generator[b] alone, so its tokens do not depend on the other rows."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < logits.size(-1):
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens before it already cover top_p (the first token always stays)
        drop = probs.cumsum(dim=-1) - probs > sampling.top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    if isinstance(generator, list):  # one uniform a row from its own stream, then the batch's inverse CDFs at once:
        # 25x faster than a multinomial a row (bench/BENCHMARKS.md), the same distribution
        u = torch.cat([torch.rand(1, generator=g, device=probs.device) for g in generator])
        cdf = probs.cumsum(dim=-1)
        picked = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]  # right: never a 0-prob token
        return picked.clamp(max=probs.size(-1) - 1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Engine:
    def __init__(self, model: GPT, use_cache: bool = True) -> None:
        self.model = model.eval()
        self.use_cache = use_cache
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling = Sampling(),
                 on_token: OnToken | None = None, row_seeds: Sequence[int] | None = None) -> Iterator[list[int | None]]:
        """With `on_token`, each sampled token is shown to it with its row's index and tokens so far; the tokens it
        returns are fed to that row next instead of sampled ones (how a tool's result enters the sequence). When it
        returns None instead, the row ends there, the refused token its last, as after a stop token (how a tool
        refuses a token that only it may write: training/chat.py's ToolCalls). It may answer with a Future of
        either (a tool running elsewhere): the engine waits for a step's futures together. `row_seeds` (instead of
        sampling.seed) give each row its own random stream: a row samples the same tokens in any batch, as when
        training/rl.py splits a step's prompts among processes."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        seq_len = self.model.config.seq_len
        longest = max(len(p) for p in prompts)
        if longest >= seq_len:
            raise ValueError(f"a prompt of {longest} tokens leaves no room in seq_len={seq_len}")
        generator = None
        if row_seeds is not None:
            if len(row_seeds) != len(prompts):
                raise ValueError(f"{len(row_seeds)} row seeds for {len(prompts)} prompts")
            generator = [torch.Generator(device=self.device).manual_seed(s) for s in row_seeds]
        elif sampling.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        steps = min(sampling.max_new_tokens, seq_len - longest)
        rows = [list(p) for p in prompts]
        logits = self._prefill(rows)
        done = [False] * len(rows)
        forced: list[list[int]] = [[] for _ in rows]
        live = list(range(len(rows)))  # the rows still in the batch, by their index in `prompts`
        shown: dict[int, Sequence[int] | None | Future] = {}  # what on_token answered each row this step
        for _ in range(steps):
            fed = sample_next(logits, sampling, generator).tolist()  # a token for each live row
            out: list[int | None] = [None] * len(rows)
            for i, b in enumerate(live):
                if done[b]:
                    continue
                if forced[b]:
                    fed[i] = forced[b].pop(0)
                    sampled = False
                else:
                    sampled = True
                rows[b].append(fed[i])
                out[b] = fed[i]
                done[b] = sampled and fed[i] in sampling.stop_tokens
                if sampled and on_token is not None and not done[b]:
                    shown[b] = on_token(b, rows[b])
            for b, given in shown.items():  # a Future is a tool still running: wait for the step's together
                given = given.result() if isinstance(given, Future) else given
                done[b] = given is None
                forced[b] = [] if given is None else list(given)
            shown.clear()
            yield out
            keep = [i for i, b in enumerate(live) if not done[b]]
            if not keep:
                return
            if len(keep) * 4 <= len(live) * 3:  # a quarter of the batch has stopped: drop those rows, whose steps
                live, fed = [live[i] for i in keep], [fed[i] for i in keep]  # were a third of the work in RL's
                self._keep(keep)  # rollouts (bench/BENCHMARKS.md)
                if isinstance(generator, list):
                    generator = [generator[i] for i in keep]
            logits = self._step([rows[b] for b in live], fed)

    def generate_all(self, prompts: Sequence[Sequence[int]], sampling: Sampling = Sampling(),
                     on_token: OnToken | None = None, row_seeds: Sequence[int] | None = None) -> list[list[int]]:
        """The new tokens of every prompt (stop token, or the token `on_token` refused, included)."""
        results: list[list[int]] = [[] for _ in prompts]
        for step in self.generate(prompts, sampling, on_token, row_seeds):
            for b, token in enumerate(step):
                if token is not None:
                    results[b].append(token)
        return results

    def _prefill(self, rows: list[list[int]]) -> torch.Tensor:
        if not self.use_cache:
            return self._recompute(rows)
        config = self.model.config
        self.cache = KVCache(config, len(rows), config.seq_len, self.device, self.model.embed_tokens.weight.dtype)
        last = []
        for b, row in enumerate(rows):
            idx = torch.tensor([row], device=self.device)
            last.append(self.model(idx, cache=self.cache, rows=torch.tensor([b], device=self.device))[0, -1])
        return torch.stack(last)

    def _keep(self, keep: list[int]) -> None:
        """Only rows `keep` of the cache stay, in that order."""
        if self.use_cache:
            idx = torch.tensor(keep, device=self.device)
            cache = self.cache
            cache.k, cache.v, cache.last_k, cache.tail = (cache.k[:, idx], cache.v[:, idx], cache.last_k[:, idx],
                                                          cache.tail[:, idx])
            cache.lengths = cache.lengths[idx]

    def _step(self, rows: list[list[int]], tokens: list[int]) -> torch.Tensor:
        if not self.use_cache:
            return self._recompute(rows)
        idx = torch.tensor(tokens, device=self.device)[:, None]
        return self.model(idx, cache=self.cache)[:, -1]

    def _recompute(self, rows: list[list[int]]) -> torch.Tensor:
        """The whole sequence again at every step: the reference the cache must match, and what it saves."""
        return torch.stack([self.model(torch.tensor([row], device=self.device))[0, -1] for row in rows])
