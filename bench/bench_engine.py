"""Generation with the KV cache against recomputing the whole sequence each step, same model, same tokens.

    .venv/bin/python -m bench.bench_engine [--depth 4] [--new-tokens 256]
"""

from __future__ import annotations

import argparse

import torch

from bench.common import compare, save
from training.engine import Engine, Sampling
from training.model import GPT, GPTConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=4096, depth=args.depth, seq_len=16 + args.new_tokens + 1))
    prompts = [list(range(i + 1, i + 17)) for i in range(args.batch)]
    sampling = Sampling(max_new_tokens=args.new_tokens, temperature=0)
    cached, plain = Engine(model), Engine(model, use_cache=False)
    assert cached.generate_all(prompts, sampling) == plain.generate_all(prompts, sampling), "the cache changed tokens"

    def run(engine):
        return lambda: sum(len(r) for r in engine.generate_all(prompts, sampling))

    row = compare(f"generation, {args.new_tokens} new tokens x {args.batch} prompts (depth {args.depth}, "
                  f"{model.num_params() / 1e6:.1f}M params)", run(cached), run(plain), "no KV cache", "tokens/s")
    save("engine", [row], threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
