"""RL's rollouts on a real SFT checkpoint: 8 replies to each of 4, 8 and 16 problems, sampled with the tools live,
each reply from its own seed, as a step of training/rl.py draws them; wall time, tokens/s and what the replies
scored. With --reference TREE (an older checkout: `git worktree add /tmp/old REV`) the same rollouts run there too,
one after the other, and each line gets the ratio:

    .venv/bin/python -m bench.bench_rollout --data DATA --checkpoint CKPT [--tasks search] [--reference /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline.storage import Store
from training import rl
from training.engine import Sampling
from training.finetune import load_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tasks", default="search")
    parser.add_argument("--problems", default="4,8,16")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--reference", default=None, help="another tree of this repository to time side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one tree's figures, for --reference
    args = parser.parse_args()
    if args.reference:
        argv = ["--data", args.data, "--checkpoint", args.checkpoint, "--tasks", args.tasks, "--problems",
                args.problems, "--max-new-tokens", str(args.max_new_tokens)]
        ours, theirs = (_figures(argv, tree) for tree in (Path(__file__).resolve().parents[1], args.reference))
        for (n, took, reward, length), (_, ref_took, ref_reward, ref_length) in zip(ours, theirs):
            print(f"{n} problems x 8 replies: {took:.2f} s against {ref_took:.2f} s ({ref_took / took:.2f}x); reward "
                  f"{reward:.3f} / {ref_reward:.3f}, mean reply {length:.0f} / {ref_length:.0f} tokens")
        return
    store = Store(args.data)
    tasks = args.tasks.split(",")
    tokenizer, _, start, _ = load_start(store, args.checkpoint, torch.device("cpu"), "rl")
    env = rl.task_tools(store, tasks)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.7,
                        stop_tokens=(tokenizer.encode_special("<|im_end|>"),))
    if not args.json:
        print(f"{torch.get_num_threads()} threads, {start['model'].num_params():,} parameters")
    figures = []
    for n in map(int, args.problems.split(",")):
        items = rl.problems(random.Random(5), tasks, n, env)
        began = time.perf_counter()
        batch = rl.rollout(start["model"], tokenizer, items, 8, sampling, env.tools, list(range(n)))
        took = time.perf_counter() - began
        tokens = sum(map(len, batch.replies))
        figures.append((n, took, sum(batch.rewards) / len(batch.rewards), tokens / len(batch.replies)))
        if not args.json:
            print(f"{n} problems x 8 replies: {took:.2f} s, {tokens / took:,.0f} tokens/s, reward "
                  f"{figures[-1][2]:.3f}, mean reply {figures[-1][3]:.1f} tokens")
    if args.json:
        print(json.dumps(figures))


def _figures(argv: list[str], tree) -> list:
    """This script's figures with `tree`'s code (its own process, so nothing is shared but the checkpoint)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, *argv, "--json"], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
