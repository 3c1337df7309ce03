"""Preference pairs where a program knows the better answer, so a reward model's accuracy means something before any
person has ranked anything (issue 12: the goal is >= 0.85 on the held-out side).

Four kinds, each pair (prompt, chosen, rejected) built from training/sft_data.py's generators:
- correct_vs_wrong: a two-digit sum worked digit by digit, against either the same working with a wrong total (the
  steps say 8 and 3, the last sentence 93) or, one pair in two, a working with a wrong step whose total follows from
  it ("Ones: 3 + 3 = 6. Tens: 1 + 3 = 4. So 12 + 33 = 46."): a program checks it, the reward model has to
  check each step, not only that the total agrees with the working. Without the second form, RLHF against the
  reward model learned exactly that wrong-but-consistent working (bench/BENCHMARKS.md, issue 12).
- answer_vs_refusal: a question the assistant can answer (who it is, a sum) answered, against "I don't know".
- refusal_vs_invention: a question about an invented person or place answered "I don't know", against a confident
  invented answer (the seeds' hallucination): the same refusal that loses above wins here, so a reward model that
  just likes or dislikes refusals gets half of the two kinds wrong.
- fluent_vs_degenerate: a reference reply against a degenerate one made from it: a phrase looping, the words
  shuffled, or the reply cut off and repeated.

Each pair takes the split of the sft_data item it was made from (held-out items ask about other numbers, names and
phrasings), so held-out accuracy is on questions the reward model never saw.
"""

from __future__ import annotations

import random
import re

from training.sft_data import HELD_OUT, TRAIN, identity, sums, unknown

KINDS = ("correct_vs_wrong", "answer_vs_refusal", "refusal_vs_invention", "fluent_vs_degenerate")
REFUSALS = ("I don't know.", "I don't know the answer to that.", "I'm not sure, so I would rather not guess.",
            "I don't have reliable information about that.")
INVENTIONS = {  # confident answers about an invented person or place
    "person": ("{subject} is a well-known painter who was born in {year} and lived in Vienna.",
               "{subject} was born in {year}. They wrote three novels and won a national prize.",
               "{subject} is a mathematician from {year} who proved the {name} theorem."),
    "place": ("{subject} is famous for its wine and its old harbour, founded in {year}.",
              "The capital of {subject} is Port {name}, a city of about {thousands},000 people.")}
TOTAL = re.compile(r"= (\d+)\.$")
NAME_IN_QUESTION = re.compile(r"(?:Who is|When was|capital of|What is) ([A-Z][a-z]+(?: [A-Z][a-z]+)?)")  # unknown()'s


def pair(kind: str, item: dict, chosen: str, rejected: str) -> dict:
    return {"kind": kind, "prompt": item["messages"][0]["content"], "chosen": chosen, "rejected": rejected,
            "split": item["split"]}


def wrong_total(rng: random.Random, reply: str) -> str:
    """The worked sum with its last number changed by a digit's worth (1-9 or 10-90), the working left as it was."""
    total = int(TOTAL.search(reply).group(1))
    wrong = total + rng.choice((-1, 1)) * (rng.randint(1, 9) if rng.random() < 0.5 else 10 * rng.randint(1, 3))
    return TOTAL.sub(f"= {max(wrong, 0) if wrong != total else total + 1}.", reply)


def wrong_working(rng: random.Random, question: str) -> str:
    """A two-digit sum's working with one step wrong (a digit of the question miscopied, or a sum off by 1-3), the
    carry and the total following from it: consistent with itself, wrong about the numbers."""
    a, b = (int(x) for x in question.removeprefix("What is ").rstrip("?").split(" + "))
    while True:
        digits = [a % 10, b % 10, a // 10, b // 10]  # the ones, then the tens, as the working copies them
        off_ones = off_tens = 0
        way = rng.randrange(3)
        if way == 0:
            i = rng.randrange(4)
            digits[i] = rng.choice([d for d in range(1 if i >= 2 else 0, 10) if d != digits[i]])
        elif way == 1:
            off_ones = rng.choice((-3, -2, -1, 1, 2, 3))
        else:
            off_tens = rng.choice((-2, -1, 1, 2))
        ones, tens = digits[0] + digits[1] + off_ones, digits[2] + digits[3] + off_tens
        carry = ones // 10
        total = (tens + carry) * 10 + ones % 10
        if 0 <= ones <= 18 and tens >= 1 and total != a + b:
            break
    return (f"Ones: {digits[0]} + {digits[1]} = {ones}" + (f", write {ones % 10} and carry 1. " if carry else ". ")
            + f"Tens: {digits[2]} + {digits[3]}" + (" + 1" if carry else "") + f" = {tens + carry}. "
            + f"So {a} + {b} = {total}.")


def invention(rng: random.Random, question: str) -> str:
    found = NAME_IN_QUESTION.search(question)
    subject = found.group(1) if found else "It"
    about = "place" if "capital" in question or "famous" in question else "person"
    return rng.choice(INVENTIONS[about]).format(subject=subject, year=rng.randint(1700, 1990),
                                         name=subject.split()[-1], thousands=rng.randint(20, 900))


def degenerate(rng: random.Random, reply: str) -> str:
    """A reply a broken model might give, made from a good one: a looping phrase, shuffled words, or a cut-off reply
    whose last words repeat."""
    words = reply.split()
    way = rng.randrange(3)
    if way == 0 or len(words) < 4:
        phrase = words[:max(1, min(len(words), rng.randint(2, 4)))]
        return " ".join(phrase * max(3, 2 * len(words) // len(phrase)))
    if way == 1:
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        return " ".join(shuffled)
    cut = rng.randint(2, max(2, len(words) // 2))
    return " ".join(words[:cut] + words[cut - 2:cut] * 6)


def synthetic_pairs(seed: int, per_kind: int, split: str) -> list[dict]:
    """`per_kind` pairs of each kind, from `split`'s side of the generators; the same for the same arguments."""
    rng = random.Random(f"preferences-{seed}-{split}")
    out = []
    for i, item in enumerate(sums(rng, per_kind, split)):
        right = item["messages"][1]["content"]
        worse = wrong_working(rng, item["messages"][0]["content"]) if i % 2 else wrong_total(rng, right)
        out.append(pair("correct_vs_wrong", item, right, worse))
    answerable = identity(rng, per_kind - per_kind // 2, split) + sums(rng, per_kind // 2, split)
    for item in answerable:
        out.append(pair("answer_vs_refusal", item, item["messages"][1]["content"], rng.choice(REFUSALS)))
    for item in unknown(rng, per_kind, split):
        out.append(pair("refusal_vs_invention", item, item["messages"][1]["content"],
                        invention(rng, item["messages"][0]["content"])))
    for item in [*identity(rng, per_kind // 3, split), *sums(rng, per_kind // 3, split),
                 *unknown(rng, per_kind - 2 * (per_kind // 3), split)]:
        reply = item["messages"][1]["content"]
        out.append(pair("fluent_vs_degenerate", item, reply, degenerate(rng, reply)))
    return out


def synthetic_set(seed: int, per_kind: int, held_out_per_kind: int) -> list[dict]:
    """The training pairs and the held-out ones, each pair with its kind and split."""
    return synthetic_pairs(seed, per_kind, TRAIN) + synthetic_pairs(seed, held_out_per_kind, HELD_OUT)
