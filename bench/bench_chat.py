"""Issue 11's goal table for a chat checkpoint: held-out accuracy per source, greedy, tools in the loop.

    .venv/bin/python -m bench.bench_chat --data data-small/data [--checkpoint ROOT] [--items 50] [--examples 2]

The items are sft_conversations' held-out ones (other numbers, words, names and passages than any training item,
follow-ups phrased apart), the first --items of each source; the score is training/evals.reward, the one SFT and
RL report. Unlike SFT's own evaluation (20 items a source, to stay quick), this reads enough items for the goals'
thresholds to mean something: at 50 items a figure's standard error is at most 7 points.
"""

from __future__ import annotations

import argparse

import torch

from pipeline.storage import Store
from training.checkpoint import checkpoint_root
from training.evals import REPLY_TOKENS, chat_accuracy
from training.finetune import load_start, show
from training.sft import scorable
from training.sft_data import HELD_OUT, follow_up_kind, load_conversations
from training.tools import available_tools

GOALS = {  # source: (the measure, goal)
    "arithmetic": ("arithmetic through the python tool (3-4 digit operands)", 0.9),
    "letter_counting": ("letter counting through the python tool", 0.9),
    "search": ("questions answered from a search of the crawl", 0.6),
    "multi_turn": ("second turn of a two-turn chat", 0.8),
    "unknown": ('"I don\'t know" on invented names', 0.9),
    "probed_unknown": ('"I don\'t know" on probed unknowns', 0.9),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/, sft_conversations/, search_index/")
    p.add_argument("--checkpoint", default=None, help="checkpoint root, latest step (default: {data}/checkpoints/sft)")
    p.add_argument("--items", type=int, default=50, help="held-out items a source")
    p.add_argument("--examples", type=int, default=0, help="replies to print a source")
    p.add_argument("--max-new-tokens", type=int, default=REPLY_TOKENS, help="tool outputs included")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    store = Store(args.data)
    root = args.checkpoint or checkpoint_root(args.data, "sft")
    tokenizer, _, start, ref = load_start(store, root, torch.device("cpu"), "bench_chat")
    items = scorable([it for it in load_conversations(store) if it["split"] == HELD_OUT], args.items)
    result = chat_accuracy(start["model"], tokenizer, items, available_tools(store), args.max_new_tokens)
    counts = {s: sum(it["source"] == s for it in items) for s in result["accuracy"]}
    print(f"{ref}: held-out accuracy, greedy, {args.items} items a source at most\n")
    print("| source | measure | items | accuracy | goal |\n|---|---|---:|---:|---:|")
    for source, accuracy in result["accuracy"].items():
        measure, goal = GOALS.get(source, ("", None))
        mark = "" if goal is None else f">= {goal:.0%}" + (" met" if accuracy >= goal else "")
        print(f"| {source} | {measure} | {counts[source]} | {accuracy:.0%} | {mark} |")
    multi_turn_kinds(start["model"], tokenizer, items, result["rewards"], available_tools(store),
                     args.max_new_tokens)
    shown: dict[str, int] = {}
    for item, (question, parts) in zip(items, result["examples"]):
        if shown.get(item["source"], 0) < args.examples:
            shown[item["source"]] = shown.get(item["source"], 0) + 1
            print(f"\n[{item['source']}] expected {item['answer'][:80]!r}\n{show(question, parts)[:600]}")
    return 0


def multi_turn_kinds(model, tokenizer, items: list[dict], rewards: list[float], tools: dict,
                     max_new_tokens: int) -> None:
    """multi_turn's score by kind of second question: follow-ups (letter, add) and changes of topic, each of the
    last next to the same question asked alone, which bounds it: a second turn on a source the model fails alone
    fails in a chat too."""
    rows: dict[str, list[tuple[dict, float]]] = {}
    for item, score in zip(items, rewards, strict=True):
        if item["source"] == "multi_turn":
            kind = follow_up_kind(item)
            rows.setdefault(f"{kind} follow-up" if kind else "change of topic", []).append((item, score))
    if not rows:
        return
    print("\n| multi_turn's second question | items | right | the same question alone |\n|---|---:|---:|---:|")
    for kind, scored in sorted(rows.items()):
        alone = ""
        if kind == "change of topic":
            second = [dict(item, messages=item["messages"][-2:]) for item, _ in scored]
            alone = f"{mean_of(chat_accuracy(model, tokenizer, second, tools, max_new_tokens)['rewards']):.0%}"
        print(f"| {kind} | {len(scored)} | {mean_of([s for _, s in scored]):.0%} | {alone} |")


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    raise SystemExit(main())
