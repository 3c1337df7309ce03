"""How well chat checkpoints copy a quote out of their context: the held-out search answers, side by side.

    .venv/bin/python -m bench.bench_copy --data data-small/data ROOT[@STEP] [ROOT[@STEP] ...] [--items 100]

A search answer quotes the first sentence of the first hit word for word (~20 tokens), so one wrong token fails it.
Teacher-forced on the reference conversation, this reads each quote token's greedy prediction and reports the share
right, the share of quotes right throughout, and what each wrong token was (`error_kind`): a token that follows
another place in the context where the current token occurs ("one-token jump": an induction head that matches one
token of context copied from the wrong place), one that follows another place where the last two tokens occur
("two-token jump"), or anything else.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from pipeline.storage import Store
from pipeline.token_io import load_tokenizer
from training.chat import render
from training.checkpoint import load_checkpoint
from training.sft_data import HELD_OUT, load_conversations

KINDS = ("right", "one-token jump", "two-token jump", "other")


def error_kind(ids: list[int], t: int, predicted: int) -> str:
    """What predicting `predicted` for ids[t] (from ids[:t]) was: "right", or which kind of wrong."""
    if predicted == ids[t]:
        return "right"
    after_two = {ids[j + 1] for j in range(1, t - 1) if ids[j] == ids[t - 1] and ids[j - 1] == ids[t - 2]}
    if predicted in after_two:
        return "two-token jump"
    after_one = {ids[j + 1] for j in range(t - 1) if ids[j] == ids[t - 1]}
    return "one-token jump" if predicted in after_one else "other"


def quote_span(ids: list[int], quote: list[int]) -> int | None:
    """Where the last occurrence of `quote` starts in `ids` (the answer's, after the tool output's), or None."""
    n = len(quote)
    return next((i for i in range(len(ids) - n, -1, -1) if ids[i:i + n] == quote), None)


def copy_report(model, tokenizer, items: list[dict]) -> dict:
    """{"tokens", "quotes", "exact", kind: count for KINDS} over the items' quotes, teacher-forced."""
    kinds: Counter = Counter()
    quotes = exact = 0
    model.eval()
    for item in items:
        ids, _ = render(tokenizer, item["messages"])
        quote = tokenizer.encode(item["answer"])
        start = quote_span(ids, quote)
        if start is None or start == 0:
            continue
        with torch.no_grad():
            predicted = model(torch.tensor([ids[:start + len(quote) - 1]])).argmax(-1)[0].tolist()
        found = [error_kind(ids, t, predicted[t - 1]) for t in range(start, start + len(quote))]
        kinds.update(found)
        quotes += 1
        exact += all(kind == "right" for kind in found)
    return {"tokens": sum(kinds.values()), "quotes": quotes, "exact": exact, **{k: kinds[k] for k in KINDS}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/ and sft_conversations/")
    p.add_argument("checkpoints", nargs="+", help="checkpoint roots, each ROOT or ROOT@STEP (default: latest)")
    p.add_argument("--items", type=int, default=100, help="held-out search conversations")
    args = p.parse_args(argv)
    store = Store(args.data)
    tokenizer, sha = load_tokenizer(store)
    items = [it for it in load_conversations(store) if it["split"] == HELD_OUT and it["source"] == "search"]
    items = items[:args.items]
    print(f"{len(items)} held-out search answers, teacher-forced\n")
    print("| checkpoint | quote tokens right | quotes right throughout "
          "| wrong: one-token jump / two-token jump / other |")
    print("|---|---:|---:|---|")
    for spec in args.checkpoints:
        root, _, step = spec.partition("@")
        model = load_checkpoint(root, step=int(step) if step else None, tokenizer_sha256=sha)["model"]
        r = copy_report(model, tokenizer, items)
        wrong = r["tokens"] - r["right"]
        print(f"| {spec} | {r['right'] / r['tokens']:.1%} | {r['exact']}/{r['quotes']} | "
              f"{r['one-token jump']} / {r['two-token jump']} / {r['other']} of {wrong} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
