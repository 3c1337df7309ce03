"""Supervised fine-tuning: the base model goes on training on conversations, with the loss on the assistant's
tokens only, and becomes a chat model.

    python -m training.sft --data data --max-steps 300
    torchrun --standalone --nproc_per_node 8 -m training.sft --data s3://bucket/crawl2chat --batch-size 16

With torchrun each process trains on its slice of the step's --batch-size x processes conversations, the loss the
mean over the whole batch's assistant tokens, so N processes take the steps one would with N times the batch; the
first process evaluates and writes the checkpoints.

The conversations are sft_conversations' (training/sft_data.py; {data}/sft_conversations/all/all/), trained on
those of the train split; the held_out ones ask about other numbers, words and names, in other phrasings. Each
evaluation reports the held-out loss on assistant tokens, per source the share of held-out questions whose greedy
reply, tools in the loop, contains the verifiable answer, and icl_gain (training/evals.py): fine-tuning on a few
thousand conversations at a high lr wipes out the base model's copying, which every tool call needs. --text-rows
keeps it: each step also trains on rows of pretraining text, each quoting a stretch of itself. Checkpoints go to
{data}/checkpoints/sft like the base model's (training/checkpoint.py) and name the base checkpoint they started
from; a rerun with the same --out resumes from the latest one. Reports go to Dagster through Pipes when it launched
the script (training/reporting.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time

import torch

from pipeline.storage import Store
from training.chat import render
from training.checkpoint import checkpoint_root, save_checkpoint
from training.data import TokenStream
from training.evals import chat_accuracy, in_context_gain
from training.distributed import Distributed
from training.finetune import load_start, resume, show
from training.reporting import Reporter
from training.sft_data import HELD_OUT, TRAIN, load_conversations
from training.tools import available_tools

REPORTED = ("train_loss", "val_loss", "icl_gain", "accuracy", "finished", "samples", "history", "base_checkpoint", "conversations")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.sft", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/, sft_conversations/ and checkpoints/")
    p.add_argument("--base", default=None, help="base checkpoint root (default: {data}/checkpoints/base, latest)")
    p.add_argument("--out", default=None, help="checkpoint root (default: {data}/checkpoints/sft)")
    p.add_argument("--seq-len", type=int, default=384, help="longest conversation in tokens; longer ones are skipped")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3, help="peak lr, decayed linearly to 0 (nanochat's SFT)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-items", type=int, default=20, help="held-out questions a source answered at each evaluation")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--text-rows", type=int, default=0, help="rows of pretraining text a step, each quoting a stretch "
                   "of itself (pretraining's --repeat-frac 1.0), trained alongside: keeps the base model's copying")
    p.add_argument("--text-seq-len", type=int, default=256, help="tokens a text row")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = p.parse_args(argv)
    for name in ("seq_len", "batch_size", "max_steps", "eval_every", "checkpoint_every", "text_seq_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    if args.text_rows < 0:
        p.error(f"--text-rows must be >= 0, got {args.text_rows}")
    args.base = args.base or checkpoint_root(args.data, "base")
    args.out = args.out or checkpoint_root(args.data, "sft")
    return args


def batch(rendered: list[tuple[list[int], list[int]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets padded to the longest row; targets are -1 (ignored) wherever the mask is 0 and in padding."""
    width = max(len(ids) for ids, _ in rendered) - 1
    x = torch.zeros(len(rendered), width, dtype=torch.long)
    y = torch.full((len(rendered), width), -1, dtype=torch.long)
    for row, (ids, mask) in enumerate(rendered):
        ids_t, mask_t = torch.tensor(ids), torch.tensor(mask[1:], dtype=torch.bool)
        x[row, :len(ids) - 1] = ids_t[:-1]
        y[row, :len(ids) - 1] = torch.where(mask_t, ids_t[1:], -1)
    return x.to(device), y.to(device)


@torch.no_grad()
def masked_loss(model, rendered: list, batch_size: int, device: torch.device) -> float:
    """Mean loss a trained (assistant) token over all of `rendered`."""
    model.eval()
    nats, count = 0.0, 0
    for i in range(0, len(rendered), batch_size):
        x, y = batch(rendered[i:i + batch_size], device)
        n = int((y >= 0).sum())
        nats += float(model(x, targets=y)) * n
        count += n
    model.train()
    return nats / max(count, 1)


def scorable(items: list[dict], n: int) -> list[dict]:
    """The first `n` items of each source with an answer to check, so every source is scored however many
    conversations it has: an imported conversation without an answer still counts in the held-out loss, but would
    score 0 whatever the model says."""
    taken: dict[str, int] = {}
    out = []
    for it in items:
        if it.get("answer") and taken.get(it["source"], 0) < n:
            taken[it["source"]] = taken.get(it["source"], 0) + 1
            out.append(it)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with Distributed(args.device, "sft") as dd:
        return train(args, dd)


def train(args: argparse.Namespace, dd: Distributed) -> int:
    device = dd.device
    store = Store(args.data)
    tokenizer, tokenizer_sha, base, base_ref = load_start(store, args.base, device, "sft")
    try:
        items = load_conversations(store)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"sft: {e}") from None
    model = base["model"]
    model.config = dataclasses.replace(model.config, seq_len=args.seq_len)  # RoPE learns no positions: raising
    # the limit is all longer chats need

    train_items = [it for it in items if it["split"] == TRAIN]
    val_items = [it for it in items if it["split"] == HELD_OUT]
    rendered = {name: [(r, it) for it in part if len((r := render(tokenizer, it["messages"]))[0]) <= args.seq_len]
                for name, part in (("train", train_items), ("val", val_items))}
    skipped = len(items) - len(rendered["train"]) - len(rendered["val"])
    if not rendered["train"]:
        raise SystemExit(f"sft: no conversation of {len(items)} fits --seq-len {args.seq_len}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, history = resume(args.out, model, optimizer, device, tokenizer_sha, "sft")
    tools = available_tools(store)
    val_rendered = [r for r, _ in rendered["val"]]
    eval_items = scorable([it for _, it in rendered["val"]], args.eval_items)
    rows = args.batch_size * dd.world_size  # the global batch; this process trains on its slice of it
    text = TokenStream(store, None, "train", args.text_seq_len, args.text_rows, dd.rank, dd.world_size, args.seed,
                       repeat_frac=1.0) if args.text_rows else None
    mine = slice(dd.rank * args.batch_size, (dd.rank + 1) * args.batch_size)

    with Reporter(dd.master) as reporter:
        reporter.log(f"sft from {base_ref}: {len(rendered['train'])} train / {len(rendered['val'])} val "
                     f"conversations ({skipped} longer than {args.seq_len} tokens skipped), {model.num_params():,} "
                     f"parameters, {dd.world_size} process(es) on {device.type}, {rows} conversations a step"
                     + (f" and {text.rows} quoting text rows" if text else ""))
        if step >= args.max_steps:
            reporter.log(f"{args.out} already reaches --max-steps {args.max_steps}; nothing to do")
            return 0
        model.train()
        train_loss, last_eval, started = float("nan"), {}, time.perf_counter()
        for step in reporter.steps(step, args.max_steps, "sft"):
            rng = random.Random(args.seed + step)  # the batch depends on the step alone, so a resumed run matches
            drawn = [rendered["train"][rng.randrange(len(rendered["train"]))][0] for _ in range(rows)]
            targets = sum(sum(mask[1:]) for _, mask in drawn)  # trained tokens in the global batch
            x, y = batch(drawn[mine], device)
            lr = args.lr * (1 - step / args.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = chat_loss = model(x, targets=y, reduction="sum") / targets  # summed over the processes: the mean
            if text is not None:  # plus the text rows' mean loss, each process's share of it
                tx, ty = text.get(step % text.batches_per_epoch, step // text.batches_per_epoch)
                loss = chat_loss + model(tx.to(device), targets=ty.to(device)) / dd.world_size
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dd.sum_gradients(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            done, (train_loss,) = step + 1, dd.sum_floats(chat_loss.item())
            entry = {"step": done, "train_loss": train_loss}
            history.append(entry)
            reporter.postfix(loss=f"{train_loss:.4f}")
            last = done == args.max_steps
            checkpoint_now = done % args.checkpoint_every == 0 or last
            if dd.master and (done % args.eval_every == 0 or checkpoint_now):
                result = chat_accuracy(model, tokenizer, eval_items, tools) if eval_items else {
                    "accuracy": {}, "finished": None, "examples": []}
                last_eval = {"val_loss": masked_loss(model, val_rendered, args.batch_size, device) if val_rendered
                             else None, "icl_gain": in_context_gain(model, model.config.vocab_size),
                             "accuracy": result["accuracy"], "finished": result["finished"],
                             "samples": [show(q, parts) for q, parts in result["examples"][:4]]}
                entry.update(val_loss=last_eval["val_loss"])
                reporter.log(f"step {done}/{args.max_steps} | loss {train_loss:.4f} | val {last_eval['val_loss']} | "
                             f"icl_gain {last_eval['icl_gain']:.2f} | "
                             f"accuracy {last_eval['accuracy']} | {time.perf_counter() - started:.0f} s")
            if dd.master and checkpoint_now:
                meta = {"stage": "sft", "base_checkpoint": base_ref, "world_size": dd.world_size,
                        "conversations": len(items), "train_loss": train_loss, "history": history, **last_eval}
                uri = save_checkpoint(args.out, done, model, optimizer, {"step": done}, meta,
                                      tokenizer_sha256=tokenizer_sha)
                reporter.checkpoint({"checkpoint": uri, "step": done, **{k: meta.get(k) for k in REPORTED}})
        dd.barrier()  # every process leaves after the master has written the last checkpoint
    return 0


if __name__ == "__main__":
    sys.exit(main())
