"""RL's rollouts on a real SFT checkpoint: 8 replies to each of 4, 8 and 16 problems, sampled with the tools live,
each reply from its own seed, as a step of training/rl.py draws them. Prints the wall time of each and what the
replies scored, so two trees can be compared on the same checkpoint and seeds (the same rewards and lengths mean the
same replies):

    .venv/bin/python -m bench.bench_rollout --data DATA --checkpoint CKPT [--tasks search]
    PYTHONPATH=/tmp/old .venv/bin/python bench/bench_rollout.py ...   # an older tree (git worktree add /tmp/old REV)
"""

from __future__ import annotations

import argparse
import random
import time

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
    args = parser.parse_args()
    store = Store(args.data)
    tasks = args.tasks.split(",")
    tokenizer, _, start, _ = load_start(store, args.checkpoint, torch.device("cpu"), "rl")
    env = rl.task_tools(store, tasks)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.7,
                        stop_tokens=(tokenizer.encode_special("<|im_end|>"),))
    print(f"{torch.get_num_threads()} threads, {start['model'].num_params():,} parameters")
    for n in map(int, args.problems.split(",")):
        items = rl.problems(random.Random(5), tasks, n, env)
        began = time.perf_counter()
        batch = rl.rollout(start["model"], tokenizer, items, 8, sampling, env.tools, list(range(n)))
        took = time.perf_counter() - began
        tokens = sum(map(len, batch.replies))
        print(f"{n} problems x 8 replies: {took:.2f} s, {tokens / took:,.0f} tokens/s, reward "
              f"{sum(batch.rewards) / len(batch.rewards):.3f}, mean reply {tokens / len(batch.replies):.1f} tokens")


if __name__ == "__main__":
    main()
