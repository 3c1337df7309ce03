"""Does what SFT and RL taught carry over to questions phrased unlike their problems? Greedy held-out accuracy on one RL
task's held-out problems (the ones training.rl evaluates with --seed), asked as the task asks them and in phrasings
no generator writes, for several checkpoints side by side (an SFT start and its RL runs). Products and search
questions (sft_data.SEARCH_QUESTIONS: until 2026-12-07 SFT asked every one "What do the docs say about {query}?").

    .venv/bin/python -m bench.bench_rl_phrasings --data data-small/data --checkpoints A,B,... [--task long_arithmetic]
        [--items 40] [--seed 1]

Only the user's question is rewritten; the reference answer and the score (training/evals.reward) stay.
"""

from __future__ import annotations

import argparse
import random
import re

import torch

from pipeline.storage import Store
from training.evals import REPLY_TOKENS, chat_accuracy
from training.finetune import load_start
from training.rl import GSM8K_FILE, problems, task_tools
from training.sft_data import HELD_OUT, PRODUCT_QUESTIONS, SEARCH_QUESTIONS, asked_query

PRODUCTS = ("How much is {a} times {b}?", "Please multiply {a} and {b}.", "Find the product: {a} × {b}.",
            "{a} times {b} equals what?")  # none of sft_data.PRODUCT_QUESTIONS, train or held out
assert not set(PRODUCTS) & {q for side in PRODUCT_QUESTIONS.values() for q in side}
SEARCHES = ("What does the documentation say about {query}?", "Look up {query} in the docs.",
            "Search the documentation for {query}.", "{query}: what do the docs say?")
assert not set(SEARCHES) & {q for side in SEARCH_QUESTIONS.values() for q in side}


def _operands(item: dict) -> dict:
    a, b = re.findall(r"\d+", item["messages"][0]["content"])
    return {"a": a, "b": b}


PHRASINGS = {  # task: (the fields of the task's question, phrasings of them no generator writes)
    **{task: (_operands, PRODUCTS) for task in ("arithmetic", "long_arithmetic", "longer_arithmetic",
                                                 "phrased_arithmetic")},
    "search": (lambda item: {"query": asked_query(item)}, SEARCHES),
}


def rephrased(items: list[dict], phrasing: str, task: str = "long_arithmetic") -> list[dict]:
    """The items with their question asked as `phrasing` asks it; the reply, the tool call and the answer kept."""
    fields = PHRASINGS[task][0]
    return [{**it, "messages": [{"role": "user", "content": phrasing.format(**fields(it))},
                                *it["messages"][1:]]} for it in items]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/ and checkpoints/")
    p.add_argument("--checkpoints", required=True, help="comma-separated checkpoint roots (latest step of each)")
    p.add_argument("--task", default="long_arithmetic", choices=sorted(PHRASINGS))
    p.add_argument("--items", type=int, default=40, help="held-out problems")
    p.add_argument("--seed", type=int, default=1, help="training.rl's --seed: the same held-out draw")
    args = p.parse_args(argv)
    store = Store(args.data)
    env = task_tools(store, [args.task], GSM8K_FILE)
    items = problems(random.Random(f"rl-eval-{args.seed}"), [args.task], args.items, env, HELD_OUT)
    asked = {"as the task asks": items,
             **{f'"{ph}"': rephrased(items, ph, args.task) for ph in PHRASINGS[args.task][1]}}
    roots = [r for r in args.checkpoints.split(",") if r]
    scores: dict[str, list[float]] = {}
    for root in roots:
        tokenizer, _, start, ref = load_start(store, root, torch.device("cpu"), "bench_rl_phrasings")
        for name, asked_items in asked.items():
            result = chat_accuracy(start["model"], tokenizer, asked_items, env.tools, REPLY_TOKENS)
            scores.setdefault(name, []).append(sum(result["rewards"]) / len(asked_items))
        print(f"{ref}: done", flush=True)
    print(f"\n{len(items)} held-out {args.task} problems, greedy\n")
    print("| asked | " + " | ".join(roots) + " |")
    print("|---|" + "---:|" * len(roots))
    for name, row in [*scores.items(), ("mean of the new phrasings", [
            sum(scores[n][i] for n in list(asked)[1:]) / (len(asked) - 1) for i in range(len(roots))])]:
        print(f"| {name} | " + " | ".join(f"{x:.1%}" for x in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
