"""Builds tests/data/preferences/: small pairwise preference files in the forms public sets ship, written for this
project (the same bytes on every run; the results are committed).

    python scripts/build_preference_samples.py

- hh_rlhf.jsonl: Anthropic HH-RLHF's form, {"chosen", "rejected"} a line, each the whole dialogue
  ("\\n\\nHuman: ...\\n\\nAssistant: ..."), the two sharing everything up to the last Assistant turn; two of them
  multi-turn, and bad records at the lines BAD_LINES names (different dialogues, no Assistant turn, the same
  answer twice, a cut-off line).
- ultrafeedback.parquet: UltraFeedback binarized's columns (prompt, prompt_id, chosen, rejected, messages,
  score_chosen, score_rejected), `chosen` and `rejected` list<struct<content, role>> ending with the assistant's
  answer, as the Hub's parquet files have them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "preferences"

HH = [  # (turns before the answer, chosen answer, rejected answer)
    (["How do I boil an egg?"], "Put the egg in boiling water for about nine minutes, then cool it in cold water.",
     "Eggs are a food."),
    (["What is the capital of France?"], "The capital of France is Paris.", "France is in Europe, I think Lyon."),
    (["Can you help me write a haiku about rain?"],
     "Soft rain on the roof / the garden drinks without sound / puddles hold the sky",
     "Rain rain rain rain rain rain rain rain"),
    (["What is 12 times 12?"], "12 times 12 is 144.", "12 times 12 is 124."),
    (["I want to learn Python. Where should I start?", "Start with the official tutorial at docs.python.org.",
      "Is it hard?"], "Not very: the tutorial builds up step by step, and small daily exercises help a lot.",
     "Yes."),
    (["Tell me a joke about computers."],
     "Why did the computer go to the doctor? It had a virus.", "I do not know any jokes."),
    (["How many legs does a spider have?"], "A spider has eight legs.", "A spider has six legs."),
    (["What does HTTP stand for?", "Hypertext Transfer Protocol.", "And HTTPS?"],
     "HTTPS is HTTP over TLS: the same protocol, encrypted.", "HTTPS stands for Hyper Transfer Protocol Safe."),
]
BAD_LINES = {3: "chosen and rejected answer different dialogues", 6: "not an HH-RLHF dialogue (no Human and "
             "Assistant turns)", 9: "chosen and rejected are the same answer", 11: "not JSON"}

ULTRA = [  # (prompt, chosen, rejected, score_chosen, score_rejected)
    ("Summarize the plot of Romeo and Juliet in one sentence.",
     "Two young lovers from feuding families in Verona marry in secret, and a chain of misunderstandings ends "
     "in both of their deaths.", "It is a play by Shakespeare.", 9.0, 4.0),
    ("Give me three tips for better sleep.",
     "Keep a regular schedule, avoid screens for an hour before bed, and keep the bedroom cool and dark.",
     "Sleep more.", 8.5, 3.0),
    ("Translate 'good morning' into Spanish.", "Buenos días.", "Buenas noches.", 10.0, 2.0),
    ("Write a short poem about the sea.",
     "Grey waves fold and break, / the gulls argue with the wind, / salt on every stone.",
     "The sea is big and blue and wet and big.", 7.5, 3.5),
    ("What is the boiling point of water at sea level in Celsius?", "100 degrees Celsius.",
     "90 degrees Celsius.", 9.5, 1.0),
    ("Explain recursion to a child.",
     "Recursion is when something is defined using a smaller copy of itself, like a set of nesting dolls.",
     "Recursion is recursion.", 8.0, 2.5),
]


def _hh_dialogue(turns: list[str], answer: str) -> str:
    text = "".join(f"\n\n{('Human', 'Assistant')[i % 2]}: {t}" for i, t in enumerate(turns))
    return f"{text}\n\nAssistant: {answer}"


def hh_lines() -> list[str]:
    good = [json.dumps({"chosen": _hh_dialogue(t, c), "rejected": _hh_dialogue(t, r)}) for t, c, r in HH]
    bad = {
        3: json.dumps({"chosen": _hh_dialogue(["Hi?"], "Hello!"), "rejected": _hh_dialogue(["Bye?"], "Goodbye!")}),
        6: json.dumps({"chosen": "Just some text.", "rejected": "Other text."}),
        9: json.dumps({"chosen": _hh_dialogue(["Ok?"], "Yes."), "rejected": _hh_dialogue(["Ok?"], "Yes.")}),
        11: '{"chosen": "\\n\\nHuman: cut off',
    }
    lines, good_iter = [], iter(good)
    for number in range(1, len(good) + len(bad) + 1):
        lines.append(bad[number] if number in bad else next(good_iter))
    return lines


def ultra_frame() -> pl.DataFrame:
    def messages(prompt: str, answer: str) -> list[dict]:
        return [{"content": prompt, "role": "user"}, {"content": answer, "role": "assistant"}]

    rows = [{"prompt": p, "prompt_id": hashlib.sha256(p.encode()).hexdigest(), "chosen": messages(p, c),
             "rejected": messages(p, r), "messages": messages(p, c), "score_chosen": sc, "score_rejected": sr}
            for p, c, r, sc, sr in ULTRA]
    message = pl.List(pl.Struct({"content": pl.String, "role": pl.String}))
    return pl.DataFrame(rows, schema={"prompt": pl.String, "prompt_id": pl.String, "chosen": message,
                                      "rejected": message, "messages": message, "score_chosen": pl.Float64,
                                      "score_rejected": pl.Float64})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hh_rlhf.jsonl").write_text("".join(line + "\n" for line in hh_lines()), encoding="utf-8")
    ultra_frame().write_parquet(OUT / "ultrafeedback.parquet", statistics=False)
    print(f"{OUT}: hh_rlhf.jsonl ({len(HH)} pairs, {len(BAD_LINES)} bad lines), ultrafeedback.parquet "
          f"({len(ULTRA)} pairs)")


if __name__ == "__main__":
    main()
