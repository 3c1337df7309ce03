"""RLHF: the chat model practises answering prompts people ranked, scored by the reward model that learned their
rankings, for a bounded number of steps, and a guard stops it once it starts gaming that reward.

    python -m training.rlhf --data data --max-steps 30

The seeds' warning: a reward model is a simulation of people, and RL finds its blind spots ("the the the" scoring
highly); so run it briefly and stop. Each step samples --samples replies to --prompts prompts (the train side of
preference_rankings), tools live as in training/rl.py, and scores each:

    reward = clip(r(prompt, reply), -clip, clip) - kl x (log p(reply) - log p_start(reply)) - length x tokens

with r the reward model (training/reward_model.py, frozen), the KL term against the frozen starting model (per
reply, the sum over its sampled tokens: InstructGPT's penalty), and a cost a token. A reply that never finished
(cut off at its budget) or forged a tool's output gets -clip. Advantages are each reward minus its group's mean
(training/rl.py's policy gradient).

The guard. Each evaluation answers held-out verifiable questions greedily (sums, identity, invented names: the
questions no training prompt asks, sft_data's held_out side), and looks at the last window's sampled replies. It
stops the run, and says why, when
- the reward model's score has risen since the first window while one kind's held-out accuracy fell by
  --max-accuracy-drop or more from the start: the policy is pleasing the reward model, not getting better (on the
  make-small model it learned sums whose working agrees with a wrong total, which the reward model scores high:
  bench/BENCHMARKS.md);
- a --max-degenerate share or more of the window's replies repeat themselves (over half of their word 3-grams
  repeated);
- mean held-out accuracy fell by twice --max-accuracy-drop, whatever the reward did;
- the replies grew to --max-length-growth times the first window's mean length, or shrank by as much.
When it fires, the weights of the last evaluation that kept every kind's accuracy within --max-accuracy-drop of
the start's (or the start's own) are restored and saved as the final checkpoint, with the guard's decision in its
config.json. Checkpoints go to {data}/checkpoints/rlhf.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pipeline.storage import PartitionMissing, Store
from training.checkpoint import checkpoint_root, read_config, save_checkpoint, step_dir
from training.engine import Sampling
from training.evals import chat_accuracy, mean
from training.finetune import load_start, resume, show
from training.preferences import load_rankings
from training.reporting import Reporter
from training.reward_model import load_reward_model
from training.rl import advantages, policy_loss, rollout
from training.sft_data import HELD_OUT, TRAIN, identity, sums, unknown
from training.tools import available_tools

REPORTED = ("reward", "accuracy", "start_accuracy", "guard", "samples", "history", "base_checkpoint",
            "reward_checkpoint")
RewardFn = Callable[[list[list[int]], list[list[int]]], list[float]]  # (prompt ids, reply ids) -> a score a reply


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.rlhf", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="storage root with tokenizer/, preference_rankings/, checkpoints/")
    p.add_argument("--start", default=None, help="checkpoint root to start from (default: {data}/checkpoints/sft)")
    p.add_argument("--reward", default=None, help="reward model root (default: {data}/checkpoints/reward)")
    p.add_argument("--out", default=None, help="checkpoint root (default: {data}/checkpoints/rlhf)")
    p.add_argument("--prompts", type=int, default=4, help="prompts a step")
    p.add_argument("--samples", type=int, default=4, help="replies sampled a prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-5, help="constant; AdamW")
    p.add_argument("--kl", type=float, default=0.05, help="the KL penalty's weight (nats of the reply)")
    p.add_argument("--clip", type=float, default=5.0, help="the reward model's score is clipped to +-this")
    p.add_argument("--length", type=float, default=0.0, help="a cost a reply token")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-items", type=int, default=10, help="held-out questions of each kind at each evaluation")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--max-accuracy-drop", type=float, default=0.15, help="guard: held-out accuracy lost")
    p.add_argument("--max-degenerate", type=float, default=0.3, help="guard: share of self-repeating replies")
    p.add_argument("--max-length-growth", type=float, default=2.0, help="guard: reply length over the first window's")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = p.parse_args(argv)
    for name in ("prompts", "max_new_tokens", "max_steps", "eval_every", "eval_items", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.samples < 2:
        p.error("--samples must be >= 2: the baseline is the mean reward of a prompt's replies")
    for name in ("lr", "temperature", "clip", "max_length_growth"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in ("kl", "length", "max_accuracy_drop", "max_degenerate"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    args.start = args.start or checkpoint_root(args.data, "sft")
    args.reward = args.reward or checkpoint_root(args.data, "reward")
    args.out = args.out or checkpoint_root(args.data, "rlhf")
    return args


def repetition(text: str) -> float:
    """The share of a text's word 3-grams that repeat an earlier one (0 for fewer than four words)."""
    words = text.split()
    grams = list(zip(words, words[1:], words[2:]))
    return 1 - len(set(grams)) / len(grams) if len(grams) > 1 else 0.0


def guard(history: list[dict], args) -> str | None:
    """Why the run must stop now, or None. `history`: the steps so far, evaluations among them (step 0 first)."""
    evals = [h for h in history if "pass_at_1" in h]
    steps = [h for h in history if "rm_reward" in h]
    if len(evals) < 2 or len(steps) < 2 * args.eval_every:
        return None
    first, last = steps[:args.eval_every], steps[-args.eval_every:]
    window = {k: sum(h[k] for h in last) / len(last) for k in ("rm_reward", "reply_tokens", "degenerate")}
    start_reward = sum(h["rm_reward"] for h in first) / len(first)
    start_tokens = sum(h["reply_tokens"] for h in first) / len(first)
    before, now = evals[0]["accuracy"], evals[-1]["accuracy"]
    task = max(before, key=lambda t: before[t] - now.get(t, 0.0))  # the task that lost most
    if window["rm_reward"] > start_reward and before[task] - now.get(task, 0.0) >= args.max_accuracy_drop:
        return (f"the reward model's score rose ({start_reward:.2f} -> {window['rm_reward']:.2f}) while held-out "
                f"{task} accuracy fell ({before[task]:.2f} -> {now.get(task, 0.0):.2f})")
    drop = evals[0]["pass_at_1"] - evals[-1]["pass_at_1"]
    if drop >= 2 * args.max_accuracy_drop:  # whatever the reward did: the run is breaking the model
        return f"held-out accuracy fell ({evals[0]['pass_at_1']:.2f} -> {evals[-1]['pass_at_1']:.2f})"
    if window["degenerate"] >= args.max_degenerate:
        return f"{window['degenerate']:.0%} of the last {len(last)} steps' replies repeat themselves"
    if window["reply_tokens"] >= args.max_length_growth * start_tokens:
        return f"replies grew from {start_tokens:.0f} to {window['reply_tokens']:.0f} tokens"
    if window["reply_tokens"] * args.max_length_growth <= start_tokens:
        return f"replies shrank from {start_tokens:.0f} to {window['reply_tokens']:.0f} tokens"
    return None


def kept_accuracy(start: dict[str, float], now: dict[str, float], max_drop: float) -> bool:
    """Whether every kind of held-out question is answered within max_drop of the start's accuracy: weights the
    guard may fall back to (an evaluation too early for the guard to judge can already be worse)."""
    return all(start[task] - now.get(task, 0.0) < max_drop for task in start)


def held_out_items(n: int) -> list[dict]:
    """The guard's verifiable questions, all of sft_data's held-out side: n sums, n identity, n invented names."""
    rng = random.Random("rlhf-guard")
    return sums(rng, n, HELD_OUT) + identity(rng, n, HELD_OUT) + unknown(rng, n, HELD_OUT)


def training_prompts(store: Store) -> list[str]:
    """The distinct prompts of preference_rankings' train side, in their stored order."""
    try:
        rows = load_rankings(store)
    except PartitionMissing as e:
        raise SystemExit(f"rlhf: no preference_rankings ({e}); materialize them first") from None
    prompts = list(dict.fromkeys(r["prompt"] for r in rows if r["split"] == TRAIN))
    if not prompts:
        raise SystemExit(f"rlhf: preference_rankings has no train prompt ({len(rows)} rankings)")
    return prompts


def reward_model_fn(reward_model, device) -> RewardFn:
    """The reward model's score of each (prompt, reply) as one sequence, read at the reply's last token."""
    from training.reward_model import padded

    @torch.no_grad()
    def score(prompts: list[list[int]], replies: list[list[int]]) -> list[float]:
        x, lengths = padded([p + r for p, r in zip(prompts, replies)], device)
        return reward_model.rewards(x, lengths).tolist()

    return score


@torch.no_grad()
def reply_logprobs(model, prompts: list[list[int]], replies: list[list[int]], masks: list[list[int]],
                   device) -> list[float]:
    """Each reply's summed log-probability of its sampled tokens (mask 1) under `model`."""
    out = []
    for p, r, m in zip(prompts, replies, masks):
        if not r:
            out.append(0.0)
            continue
        seq = torch.tensor([p + r], device=device)
        logp = F.log_softmax(model(seq[:, :-1]).float(), dim=-1)[0, len(p) - 1:]
        picked = logp.gather(-1, torch.tensor(r, device=device)[:, None]).squeeze(-1)
        out.append(float((picked * torch.tensor(m, device=device, dtype=torch.float)).sum()))
    return out


def main(argv: list[str] | None = None) -> int:
    return train(parse_args(argv))


def train(args: argparse.Namespace, reward_fn: RewardFn | None = None) -> int:
    """The run; `reward_fn` replaces the reward model (tests give it a deliberately gameable one)."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    store = Store(args.data)
    tokenizer, tokenizer_sha, start, start_ref = load_start(store, args.start, device, "rlhf")
    model = start["model"]
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    reward_ref = None
    if reward_fn is None:
        try:
            rm = load_reward_model(args.reward, device=device, tokenizer_sha256=tokenizer_sha)
        except FileNotFoundError as e:
            raise SystemExit(f"rlhf: {e}; materialize reward_model first") from None
        reward_fn = reward_model_fn(rm["model"].eval(), device)
        reward_ref = f"{args.reward.rstrip('/')}/{step_dir(rm['step'])}"
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, history = resume(args.out, model, optimizer, device, tokenizer_sha, "rlhf")
    prompts = training_prompts(store)
    items = [{"source": "rlhf", "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": ""}],
              "answer": None, "split": TRAIN} for p in prompts]
    tools = available_tools(store)
    eval_items = held_out_items(args.eval_items)
    im_end = tokenizer.encode_special("<|im_end|>")
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, stop_tokens=(im_end,))

    def evaluate() -> tuple[dict, list]:
        result = chat_accuracy(model, tokenizer, eval_items, tools, max_new_tokens=args.max_new_tokens)
        return {"accuracy": result["accuracy"], "pass_at_1": mean(result["accuracy"]),
                "eval_reply_tokens": result["reply_tokens"]}, result["examples"]

    with Reporter(True) as reporter:
        reporter.log(f"rlhf from {start_ref} against {reward_ref or 'a given reward'}: {len(prompts)} prompts, "
                     f"{args.prompts} x {args.samples} replies a step, kl {args.kl}, clip {args.clip}, length "
                     f"{args.length}, {model.num_params():,} parameters on {device.type}")
        if step > 0 and (read_config(args.out).get("guard") or {}).get("fired"):
            reporter.log(f"{args.out}: the guard stopped this run at step {step}; nothing to do")
            return 0
        if step >= args.max_steps:
            reporter.log(f"{args.out} already reaches --max-steps {args.max_steps}; nothing to do")
            return 0
        if step == 0:
            history.append({"step": 0, **evaluate()[0]})
        safe = (step, copy.deepcopy(model.state_dict()))  # the last evaluated weights that kept their accuracy
        last_eval, fired, started = {}, None, time.perf_counter()
        for step in reporter.steps(step, args.max_steps, "rlhf"):
            rng = random.Random(args.seed * 1_000_003 + step)
            drawn = [items[rng.randrange(len(items))] for _ in range(args.prompts)]
            seeds = [rng.randrange(2**31) for _ in drawn]
            batch = rollout(model, tokenizer, drawn, args.samples, sampling, tools, seeds)
            scores = reward_fn(batch.prompts, batch.replies)
            kl = [a - b for a, b in zip(reply_logprobs(model, batch.prompts, batch.replies, batch.masks, device),
                                        reply_logprobs(reference, batch.prompts, batch.replies, batch.masks, device))]
            finished = [bool(r) and r[-1] == im_end for r in batch.replies]
            rewards = [max(-args.clip, min(args.clip, s)) - args.kl * k - args.length * len(r) if done and not forged
                       else -args.clip for s, k, r, done, forged in zip(
                           scores, kl, batch.replies, finished, (row in batch.forged for row in range(len(kl))))]
            advantage = advantages(rewards, args.samples)
            if any(advantage):
                optimizer.zero_grad(set_to_none=True)
                loss = policy_loss(model, batch.prompts, batch.replies, batch.masks, advantage, device)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            texts = [tokenizer.decode([t for t in r if t != im_end]) for r in batch.replies]
            done = step + 1
            entry = {"step": done, "reward": sum(rewards) / len(rewards), "rm_reward": sum(scores) / len(scores),
                     "kl": sum(kl) / len(kl), "reply_tokens": sum(map(len, batch.replies)) / len(batch.replies),
                     "degenerate": sum(repetition(t) > 0.5 for t in texts) / len(texts),
                     "finished": sum(finished) / len(finished)}
            history.append(entry)
            reporter.postfix(reward=f"{entry['reward']:.3f}", kl=f"{entry['kl']:.3f}")
            checkpoint_now = done % args.checkpoint_every == 0 or done == args.max_steps
            if done % args.eval_every == 0 or checkpoint_now:
                figures, examples = evaluate()
                entry.update(figures)
                last_eval = {"accuracy": figures["accuracy"],  # one example of each kind of question
                             "samples": [show(q, p) for q, p in examples[::args.eval_items]]}
                fired = guard(history, args)
                reporter.log(f"step {done}/{args.max_steps} | reward model {entry['rm_reward']:.2f} | kl "
                             f"{entry['kl']:.2f} | reply tokens {entry['reply_tokens']:.0f} | degenerate "
                             f"{entry['degenerate']:.0%} | held-out accuracy {figures['accuracy']} | "
                             f"{time.perf_counter() - started:.0f} s" + (f" | guard: {fired}" if fired else ""))
                if fired:
                    model.load_state_dict(safe[1])
                elif kept_accuracy(history[0]["accuracy"], figures["accuracy"], args.max_accuracy_drop):
                    safe = (done, copy.deepcopy(model.state_dict()))
            if checkpoint_now or fired:
                guard_state = {"fired": bool(fired), "reason": fired, "at_step": done,
                               "restored_step": safe[0] if fired else None}
                meta = {"stage": "rlhf", "base_checkpoint": start_ref, "reward_checkpoint": reward_ref,
                        "reward": sum(h["reward"] for h in history[-args.checkpoint_every:] if "reward" in h)
                        / max(1, sum("reward" in h for h in history[-args.checkpoint_every:])),
                        "start_accuracy": history[0]["accuracy"], "guard": guard_state, "history": history,
                        **last_eval}
                uri = save_checkpoint(args.out, done, model, optimizer, {"step": done}, meta,
                                      tokenizer_sha256=tokenizer_sha)
                reporter.checkpoint({"checkpoint": uri, "step": done, **{k: meta.get(k) for k in REPORTED}})
            if fired:
                reporter.log(f"the guard stopped the run at step {done}: {fired}; saved the weights of step {safe[0]}")
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
