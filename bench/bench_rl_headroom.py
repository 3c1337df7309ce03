"""Where RL can lift a chat checkpoint: for each RL task, greedy pass@1, sampled pass@1 and pass@k on held-out
problems (the ones training.rl evaluates with the same --seed).

    .venv/bin/python -m bench.bench_rl_headroom --data data-small/data [--checkpoint ROOT] [--tasks search,sums]
        [--items 40] [--k 16] [--temperature 0.7]

RL on verifiable answers reinforces the replies it samples that are right, so a problem no sample gets right
teaches nothing: the lift it can buy is bounded by pass@k minus sampled pass@1 (BENCHMARKS.md, issue 11). This
reads that headroom before a run is spent on a task, with the evaluation training.rl runs (rl.evaluate).
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from pipeline.storage import Store
from training.checkpoint import checkpoint_root
from training.evals import REPLY_TOKENS
from training.finetune import load_start
from training.rl import GSM8K_FILE, TASKS, evaluate, problems, task_tools
from training.sft_data import HELD_OUT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/, search_index/ and checkpoints/")
    p.add_argument("--checkpoint", default=None, help="checkpoint root, latest step (default: {data}/checkpoints/sft)")
    p.add_argument("--tasks", default="arithmetic,letter_counting,sums,search,follow_up")
    p.add_argument("--items", type=int, default=40, help="held-out problems a task")
    p.add_argument("--k", type=int, default=16, help="replies sampled a problem")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=REPLY_TOKENS, help="tool outputs included")
    p.add_argument("--seed", type=int, default=1, help="training.rl's --seed: the same held-out draw")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if unknown := sorted(set(tasks) - set(TASKS)):
        p.error(f"--tasks: unknown {unknown}; choose from {', '.join(TASKS)}")
    torch.manual_seed(0)
    store = Store(args.data)
    root = args.checkpoint or checkpoint_root(args.data, "sft")
    tokenizer, _, start, ref = load_start(store, root, torch.device("cpu"), "bench_rl_headroom")
    env = task_tools(store, tasks, GSM8K_FILE)
    print(f"{ref}: {args.items} held-out problems a task, {args.k} replies each at temperature {args.temperature}\n")
    print(f"| task | greedy pass@1 | sampled pass@1 | pass@{args.k} | headroom | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for task in tasks:
        began = time.perf_counter()
        items = problems(random.Random(f"rl-eval-{args.seed}"), [task], args.items, env, HELD_OUT)
        figures, _ = evaluate(start["model"], tokenizer, items, env.tools, argparse.Namespace(
            pass_k=args.k, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed))
        g, s, k = (figures[name] for name in ("pass_at_1", "sampled_pass_at_1_mean", "pass_at_k_mean"))
        print(f"| {task} | {g:.1%} | {s:.1%} | {k:.1%} | {k - s:+.1%} | {time.perf_counter() - began:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
