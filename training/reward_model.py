"""The reward model: the chat model with a scalar head, trained on preference pairs (the seeds' RLHF; InstructGPT's
reward model).

    python -m training.reward_model --data data --max-steps 300

It starts from the latest SFT checkpoint (its weights already read conversations) with a new head that maps the
last layer's state at the reply's closing <|im_end|> to one number, r(prompt, reply). Each step draws --batch-size
pairs (prompt, chosen, rejected) from the train side of preference_rankings (every pair each ranking implies:
training/preferences.py) and minimises the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)). Each evaluation
reports the held-out pairs' accuracy (the share where r(chosen) > r(rejected)), overall and by kind (the synthetic
set's kinds, training/synthetic_preferences.py, and "human" or "import" for people's rankings), and the mean margin.
Checkpoints go to {data}/checkpoints/reward and name the SFT checkpoint they started from; a rerun resumes.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.storage import PartitionMissing, Store
from training.chat import render
from training.checkpoint import checkpoint_root, load_checkpoint, save_checkpoint
from training.distributed import Distributed
from training.finetune import load_start, resume
from training.model import GPT, GPTConfig
from training.preferences import load_rankings, pair_rows
from training.reporting import Reporter
from training.sft_data import HELD_OUT, TRAIN

REPORTED = ("train_loss", "pairwise_accuracy", "accuracy_by_kind", "margin", "pairs", "history", "base_checkpoint")


class RewardModel(GPT):
    """GPT with a scalar head on the last layer's state; its language-model head is kept (unused) so the weights
    load from and compare with the chat model's."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.score = nn.Linear(config.width, 1, bias=False)
        nn.init.zeros_(self.score.weight)  # every reply starts at reward 0: the first steps move the head, not noise

    @classmethod
    def from_chat_model(cls, model: GPT) -> RewardModel:
        reward = cls(model.config).to(next(model.parameters()).device)
        missing, unexpected = reward.load_state_dict(model.state_dict(), strict=False)
        assert missing == ["score.weight"] and not unexpected, (missing, unexpected)
        return reward

    def rewards(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One reward a row: the head on the state at the row's last token (position lengths - 1; rows padded on the
        right)."""
        states = self.hidden(idx)
        last = states[torch.arange(idx.shape[0], device=idx.device), lengths - 1]
        return self.score(last).squeeze(-1).float()


def load_reward_model(root: str, device="cpu", tokenizer_sha256: str | None = None, storage_options=None) -> dict:
    """The latest reward checkpoint under `root` (load_checkpoint's dict, its "model" a RewardModel)."""
    return load_checkpoint(root, storage_options=storage_options, device=device, tokenizer_sha256=tokenizer_sha256,
                           model_class=RewardModel)


def reply_ids(tokenizer, prompt: str, reply: str) -> list[int]:
    """The ids the reward model reads: a user turn with the prompt and the assistant's reply, ending in <|im_end|>."""
    return render(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}])[0]


def padded(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, ids in enumerate(rows):
        x[i, :len(ids)] = torch.tensor(ids)
    return x.to(device), torch.tensor([len(ids) for ids in rows], device=device)


def pair_loss(model: RewardModel, pairs: list[tuple[list[int], list[int]]], device) -> tuple[torch.Tensor, ...]:
    """(mean Bradley-Terry loss, margins r(chosen) - r(rejected)) of (chosen ids, rejected ids) pairs."""
    x, lengths = padded([ids for p in pairs for ids in p], device)
    r = model.rewards(x, lengths).view(len(pairs), 2)
    margin = r[:, 0] - r[:, 1]
    return -F.logsigmoid(margin).mean(), margin


@torch.no_grad()
def evaluate(model: RewardModel, pairs: list[dict], batch_size: int, device) -> dict:
    """Held-out pairwise accuracy (r(chosen) > r(rejected)) overall and by kind, and the mean margin."""
    model.eval()
    right: dict[str, list[bool]] = {}
    margins = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        _, margin = pair_loss(model, [p["ids"] for p in chunk], device)
        for p, m in zip(chunk, margin.tolist()):
            right.setdefault(p["kind"], []).append(m > 0)
            margins.append(m)
    model.train()
    every = [ok for oks in right.values() for ok in oks]
    return {"pairwise_accuracy": sum(every) / len(every) if every else None,
            "accuracy_by_kind": {k: sum(v) / len(v) for k, v in sorted(right.items())},
            "margin": sum(margins) / len(margins) if margins else None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.reward_model", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/, preference_rankings/, checkpoints/")
    p.add_argument("--start", default=None, help="checkpoint root to start from (default: {data}/checkpoints/sft)")
    p.add_argument("--out", default=None, help="checkpoint root (default: {data}/checkpoints/reward)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs a step")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-4, help="constant; AdamW")
    p.add_argument("--seq-len", type=int, default=384, help="longest prompt + reply in tokens; longer pairs skipped")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = p.parse_args(argv)
    for name in ("batch_size", "max_steps", "seq_len", "eval_every", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    args.start = args.start or checkpoint_root(args.data, "sft")
    args.out = args.out or checkpoint_root(args.data, "reward")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with Distributed(args.device, "reward_model") as dd:
        if dd.world_size > 1:
            raise SystemExit("reward_model: one process (a reward model trains in minutes; torchrun is for the policy)")
        return train(args, dd)


def train(args: argparse.Namespace, dd: Distributed) -> int:
    device = dd.device
    store = Store(args.data)
    tokenizer, tokenizer_sha, start, start_ref = load_start(store, args.start, device, "reward_model")
    try:
        rows = load_rankings(store)
    except PartitionMissing as e:
        raise SystemExit(f"reward_model: no preference_rankings ({e}); materialize them first") from None
    pairs = {TRAIN: [], HELD_OUT: []}
    too_long = 0
    for p in pair_rows(rows):
        ids = (reply_ids(tokenizer, p["prompt"], p["chosen"]), reply_ids(tokenizer, p["prompt"], p["rejected"]))
        if max(map(len, ids)) > args.seq_len:
            too_long += 1
            continue
        pairs[p["split"]].append({**p, "ids": ids})
    if not pairs[TRAIN]:
        raise SystemExit(f"reward_model: no train pair of {len(rows)} rankings fits --seq-len {args.seq_len}")
    model = RewardModel.from_chat_model(start["model"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, history = resume(args.out, model, optimizer, device, tokenizer_sha, "reward_model", RewardModel)
    counts = {"train": len(pairs[TRAIN]), "held_out": len(pairs[HELD_OUT]), "too_long": too_long}

    with Reporter(dd.master) as reporter:
        reporter.log(f"reward_model from {start_ref}: {counts['train']} train / {counts['held_out']} held-out pairs "
                     f"from {len(rows)} rankings ({too_long} longer than {args.seq_len} tokens skipped), "
                     f"{model.num_params():,} parameters on {device.type}")
        if step >= args.max_steps:
            reporter.log(f"{args.out} already reaches --max-steps {args.max_steps}; nothing to do")
            return 0
        if step == 0:
            history.append({"step": 0, **evaluate(model, pairs[HELD_OUT], args.batch_size, device)})
        model.train()
        last_eval, started = {}, time.perf_counter()
        for step in reporter.steps(step, args.max_steps, "reward model"):
            rng = random.Random(args.seed + step)  # the batch depends on the step alone, so a resumed run matches
            drawn = [pairs[TRAIN][rng.randrange(len(pairs[TRAIN]))]["ids"] for _ in range(args.batch_size)]
            loss, margin = pair_loss(model, drawn, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            done = step + 1
            entry = {"step": done, "train_loss": loss.item(), "train_accuracy": float((margin > 0).float().mean())}
            history.append(entry)
            reporter.postfix(loss=f"{entry['train_loss']:.4f}")
            checkpoint_now = done % args.checkpoint_every == 0 or done == args.max_steps
            if done % args.eval_every == 0 or checkpoint_now:
                last_eval = evaluate(model, pairs[HELD_OUT], args.batch_size, device)
                entry.update(last_eval)
                reporter.log(f"step {done}/{args.max_steps} | loss {entry['train_loss']:.4f} | held-out accuracy "
                             f"{last_eval['pairwise_accuracy']} {last_eval['accuracy_by_kind']} | "
                             f"{time.perf_counter() - started:.0f} s")
            if checkpoint_now:
                meta = {"stage": "reward", "base_checkpoint": start_ref, "pairs": counts,
                        "train_loss": entry["train_loss"], "history": history, **last_eval}
                uri = save_checkpoint(args.out, done, model, optimizer, {"step": done}, meta,
                                      tokenizer_sha256=tokenizer_sha)
                reporter.checkpoint({"checkpoint": uri, "step": done, **{k: meta.get(k) for k in REPORTED}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
