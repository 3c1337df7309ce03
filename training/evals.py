"""Evaluations of a checkpoint that need no labelled data.

in_context_gain: how much a model learns from its own context. A random token sequence is shown twice; a model
with induction heads predicts the second copy far better than the first (Olsson et al. 2022, "In-context Learning
and Induction Heads"). The gain in nats/token is the mechanism few-shot prompting rests on, so it tells whether a
base model is ready for prompts like the seeds' "English: house / Korean: ..." before anyone tries one. A tiny CPU
model on a few hundred thousand tokens shows ~0; models that few-shot prompt well show several nats.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

ICL_PROBE_ROWS = 16
ICL_PROBE_LEN = 48  # tokens a copy; 2 x 48 fits the tiniest seq_len we train at (128)
ICL_SKIP = 8  # the first tokens of a copy carry no information about the copy either way
NUMBER = re.compile(r"-?\d+")


@torch.no_grad()
def in_context_gain(model, vocab_size: int, first_id: int = 256, seed: int = 0, autocast=None) -> float:
    """Mean loss on a random sequence's first showing minus its second (nats/token; > 0 means the model copies).

    Tokens are drawn from ids >= first_id (the merged tokens, not single bytes), the same for every call with
    one seed, so values are comparable across checkpoints of a run.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(first_id, vocab_size, (ICL_PROBE_ROWS, ICL_PROBE_LEN), generator=generator)
    x = torch.cat([half, half], dim=1).to(device)
    if autocast is None:
        logits = model(x[:, :-1])
    else:
        with autocast:
            logits = model(x[:, :-1])
    nll = F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
    first = nll[:, ICL_SKIP:ICL_PROBE_LEN - 1].mean()  # targets 1..47 are the first showing
    second = nll[:, ICL_PROBE_LEN - 1 + ICL_SKIP:].mean()  # targets 48.. repeat it
    model.train(was_training)
    return float(first - second)


def final_text(parts: list[dict]) -> str:
    """What the assistant said after its last tool result: the part a user reads as the answer."""
    last_output = max((i for i, p in enumerate(parts) if p["type"].endswith("_output")), default=-1)
    return "".join(p["text"] for p in parts[last_output + 1:] if p["type"] == "text")


def reward(item: dict, parts: list[dict]) -> float:
    """1.0 when the reply's final text gives the item's verifiable answer, else 0.0; the RL reward, too.

    A numeric answer must be the last number of the final text (so "3 or 13" earns nothing for 13, and listing
    numbers cannot game it); a probed fact (training/knowledge_probe.py) must say enough of its reference's words
    (knowledge_probe.judge); any other answer must appear in it."""
    answer = item.get("answer")
    if not answer:
        return 0.0
    text = final_text(parts)
    if item.get("source") == "probed_known":
        from training.knowledge_probe import judge

        return float(judge(text, answer))
    if NUMBER.fullmatch(answer):
        numbers = NUMBER.findall(text.replace(",", ""))
        return float(bool(numbers) and numbers[-1] == answer)
    return float(answer in text)


def reply_rewards(tokenizer, items: list[dict], replies: list[list[int]], forged_rows: set[int]) -> list[float]:
    """`reward` of each reply to its item, but 0 for a reply that never finished (no <|im_end|>: cut off at the
    token budget) and for one ended for writing a tool's output marker itself (ToolCalls.forged). An answer given
    next to a forged tool result is neither right nor one to reinforce; and a reply that runs on past its answer
    would otherwise earn text answers by containing them, which RL learns to exploit (BENCHMARKS.md: it stopped
    ending its replies, and "right" rose while right-and-finished fell)."""
    from training.chat import parse_reply

    im_end = tokenizer.encode_special("<|im_end|>")
    finished = [bool(reply) and reply[-1] == im_end and row not in forged_rows for row, reply in enumerate(replies)]
    return [reward(item, parse_reply(tokenizer, reply)) if done else 0.0
            for item, reply, done in zip(items, replies, finished, strict=True)]


REPLY_TOKENS = 192  # a reply's tokens, tool outputs included: a search pastes ~80, its answer quotes ~40 of them


@torch.no_grad()
def chat_accuracy(model, tokenizer, items: list[dict], tools: dict, max_new_tokens: int = REPLY_TOKENS) -> dict:
    """Greedy replies to each item's conversation (all but its last assistant turn), tools in the loop; returns
    {"accuracy": {source: fraction}, "rewards": each item's reward, "reply_tokens": mean reply length, "finished":
    the share of replies that end their turn (<|im_end|>) inside the budget, "examples": [(question, reply parts)]}.
    A base model never writes <|im_end|>: "finished" is the chat format learned, whatever the answers."""
    from training.chat import parse_reply

    replies, rewards = _replies(model, tokenizer, items, tools, 1, 0.0, max_new_tokens, None)
    examples = [(item["messages"][-2]["content"], parse_reply(tokenizer, reply)) for item, reply in zip(items, replies)]
    im_end = tokenizer.encode_special("<|im_end|>")
    finished = sum(bool(reply) and reply[-1] == im_end for reply in replies) / max(len(replies), 1)
    return {"accuracy": _by_source(items, rewards), "rewards": rewards, "finished": finished,
            "reply_tokens": sum(map(len, replies)) / max(len(replies), 1), "examples": examples}


@torch.no_grad()
def sampled_accuracy(model, tokenizer, items: list[dict], tools: dict, k: int, temperature: float,
                     max_new_tokens: int = REPLY_TOKENS, seed: int = 0) -> dict[str, dict[str, float]]:
    """k sampled replies to each item: {"pass_at_k": {source: share of items at least one of them gets right},
    "pass_at_1": {source: share of the replies that are right}}. pass@k is what the model can do at all, next to
    greedy accuracy (what it does first); sampled pass@1 is Chen et al.'s (2021) unbiased estimate of one sample's
    chance, what RL's reward measures. Each reply draws from its own seed, so the figures do not depend on how
    the rows are batched."""
    _, rewards = _replies(model, tokenizer, items, tools, k, temperature, max_new_tokens, seed)
    solved = [float(any(rewards[i * k:(i + 1) * k])) for i in range(len(items))]
    per_item = [sum(rewards[i * k:(i + 1) * k]) / k for i in range(len(items))]
    return {"pass_at_k": _by_source(items, solved), "pass_at_1": _by_source(items, per_item)}


def _replies(model, tokenizer, items: list[dict], tools: dict, k: int, temperature: float, max_new_tokens: int,
             seed: int | None) -> tuple[list[list[int]], list[float]]:
    """k replies to each item (item by item), tools in the loop, and their rewards."""
    from training.chat import ToolCalls, render_prompt, tool_pool
    from training.engine import Engine, Sampling

    prompts = [render_prompt(tokenizer, item["messages"][:-1]) for item in items for _ in range(k)]
    im_end = tokenizer.encode_special("<|im_end|>")
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, stop_tokens=(im_end,))
    row_seeds = None if seed is None else [seed * 1_000_003 + row for row in range(len(prompts))]
    was_training = model.training
    tool_calls = ToolCalls(tokenizer, tools, pool=tool_pool())
    replies = Engine(model).generate_all(prompts, sampling, on_token=tool_calls, row_seeds=row_seeds)
    model.train(was_training)
    scored = [item for item in items for _ in range(k)]
    return replies, reply_rewards(tokenizer, scored, replies, {row for row, _ in tool_calls.forged})


def _by_source(items: list[dict], scores: list[float]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for item, score in zip(items, scores, strict=True):
        by.setdefault(item["source"], []).append(score)
    return {s: sum(v) / len(v) for s, v in sorted(by.items())}


def mean(by_source: dict[str, float]) -> float | None:
    """The mean over sources (each task counts once, however many items it has)."""
    return sum(by_source.values()) / len(by_source) if by_source else None
