"""Conversations for supervised fine-tuning: the seeds' examples of ideal assistant behaviour, generated.

Each generator returns items {"source", "messages", "answer"}: `answer` is the text a correct reply must contain, so
the same items serve as evaluation and as verifiable RL tasks (nanochat's rule: tasks expose their checks). Tool
results in the conversations are real: the python tool's output comes from running the code in the sandbox, the
search tool's from the project's own index, so the model learns to trust what the tools actually return.

- identity: who the assistant is and who built it (the seeds: without this it would claim to be ChatGPT).
- arithmetic: small sums worked step by step in text (the seeds: spread the computation over tokens), products
  through the python tool (mental arithmetic over many digits is where models fail).
- letter counting: through the python tool (the seeds: models see tokens, not letters).
- unknown: questions about invented people and places answered "I don't know" (the seeds' hallucination fix).
- search: questions about the crawl answered from a search call's results (the seeds' "working memory").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable

from training.chat import validate

NAME = "crawl2chat"
IDENTITY_ANSWER = (f"I am {NAME}, a small language model. The crawl2chat team built me by pretraining on a web "
                   "crawl and fine-tuning on example conversations.")
IDENTITY_QUESTIONS = ("Who are you?", "What is your name?", "Who built you?", "Who made you?", "Are you ChatGPT?",
                      "What are you?", "Introduce yourself.", "Which company trained you?", "hi, who am I talking to?")
WORDS = ("strawberry", "banana", "mississippi", "bookkeeper", "committee", "occurrence", "parallel", "assessment",
         "balloon", "letter", "programming", "debian", "kernel", "package", "terminal", "repository", "dependency",
         "compiler", "abracadabra", "necessary", "embarrass", "accommodate", "possession", "success", "coffee")
SYLLABLES = ("vel", "mor", "tra", "quin", "zor", "bla", "ket", "rin", "dal", "oph", "sur", "nex", "ti", "gam", "lo")
UNKNOWN_TEMPLATES = (
    ("Who is {person}?", "I don't know who {person} is. I have no reliable information about them, and I would "
                         "rather say so than guess."),
    ("What is the capital of {place}?", "I don't know. I have no information about a country called {place}."),
    ("When was {person} born?", "I don't know. I have no reliable information about {person}."),
    ("What is {place} famous for?", "I don't know anything about {place}, so I can't say what it is famous for."),
)
IDK = "I don't know"

Tool = Callable[[str], str]


def identity(rng: random.Random, n: int) -> list[dict]:
    return [_item("identity", [_user(rng.choice(IDENTITY_QUESTIONS)), _assistant(IDENTITY_ANSWER)], NAME)
            for _ in range(n)]


def arithmetic(rng: random.Random, n: int, python: Tool) -> list[dict]:
    items = []
    for i in range(n):
        if i % 2 == 0:  # a two-digit sum, digit by digit
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            ones = a % 10 + b % 10
            carry = ones // 10
            steps = (f"Ones: {a % 10} + {b % 10} = {ones}" + (f", write {ones % 10} and carry 1. " if carry else ". ")
                     + f"Tens: {a // 10} + {b // 10}" + (" + 1" if carry else "") + f" = {a // 10 + b // 10 + carry}. ")
            total = a + b
            items.append(_item("arithmetic", [_user(f"What is {a} + {b}?"),
                                              _assistant(f"{steps}So {a} + {b} = {total}.")], str(total)))
        else:  # a product of bigger numbers, through the tool
            a, b = rng.randint(100, 9999), rng.randint(100, 999)
            code = f"{a} * {b}"
            result = python(code)
            items.append(_item("arithmetic", [_user(f"What is {a} times {b}?"), _tool_reply(
                "python", code, result, f"{a} × {b} = {result}.")], result))
    return items


def letter_counting(rng: random.Random, n: int, python: Tool) -> list[dict]:
    items = []
    for _ in range(n):
        word = rng.choice(WORDS)
        letter = rng.choice(word) if rng.random() < 0.85 else rng.choice("xqzjv")
        code = f'"{word}".count("{letter}")'
        result = python(code)
        question = rng.choice((f'How many "{letter}" are in the word "{word}"?',
                               f"How many times does the letter {letter} appear in {word}?",
                               f"Count the {letter}'s in {word}."))
        answer = f'There {"is" if result == "1" else "are"} {result} "{letter}" in "{word}".'
        items.append(_item("letter_counting", [_user(question), _tool_reply("python", code, result, answer)], result))
    return items


def unknown(rng: random.Random, n: int) -> list[dict]:
    items = []
    for _ in range(n):
        person = f"{_invented(rng).title()} {_invented(rng).title()}"
        place = _invented(rng, 3).title()
        question, reply = rng.choice(UNKNOWN_TEMPLATES)
        items.append(_item("unknown", [_user(question.format(person=person, place=place)),
                                       _assistant(reply.format(person=person, place=place))], IDK))
    return items


def search(rng: random.Random, n: int, passages: list[dict], search_tool: Tool) -> list[dict]:
    """Questions whose answer is in a passage of the corpus: the assistant searches for the passage's rarest words
    and answers with the first sentence of what came back. `passages`: dicts with "url" and "text"."""
    items = []
    for passage in rng.sample(passages, len(passages)):  # passages in random order until n questions are made
        if len(items) == n:
            break
        words = [w.strip(".,:;()\"'") for w in passage["text"].split()]
        words = [w for w in words if len(w) > 4 and w.isalpha()]
        if len(words) < 3:
            continue
        query = " ".join(sorted(set(words), key=lambda w: (-len(w), w))[:3])
        result = search_tool(query)
        found = _first_sentence(result)
        if not found:
            continue
        answer = f"The documentation says: {found}"
        items.append(_item("search", [_user(f"What do the docs say about {query}?"),
                                      _tool_reply("search", query, result, answer)], found))
    return items


def multi_turn(rng: random.Random, n: int, pool: list[dict]) -> list[dict]:
    """Two exchanges of the pool in one conversation: the second question is answered with the first in context,
    so a chat that goes on past one turn is not outside everything the model saw."""
    if not pool:
        return []
    items = []
    for _ in range(n):
        first, second = rng.sample(pool, 2) if len(pool) > 1 else (pool[0], pool[0])
        items.append(_item("multi_turn", [*first["messages"], *second["messages"]], second["answer"]))
    return items


def mixture(seed: int, counts: dict[str, int], python: Tool, search_tool: Tool | None = None,
            passages: list[dict] | None = None) -> list[dict]:
    """Every generator's items, shuffled, the same for the same seed and tools; "multi_turn" joins pairs of the
    others' items."""
    rng = random.Random(seed)
    makers = {
        "identity": lambda k: identity(rng, k),
        "arithmetic": lambda k: arithmetic(rng, k, python),
        "letter_counting": lambda k: letter_counting(rng, k, python),
        "unknown": lambda k: unknown(rng, k),
        "search": lambda k: search(rng, k, passages or [], search_tool) if search_tool else [],
    }
    unknown_sources = set(counts) - set(makers) - {"multi_turn"}
    if unknown_sources:
        raise ValueError(f"unknown SFT sources {sorted(unknown_sources)}; choose from {sorted(makers)} and multi_turn")
    items = [item for source, k in counts.items() if source != "multi_turn" for item in makers[source](k)]
    items += multi_turn(rng, counts.get("multi_turn", 0), items)
    rng.shuffle(items)
    return items


def shared_questions(train: Iterable[dict], held_out: Iterable[dict]) -> set[str]:
    """The user messages a held-out item shares with a training item, in any turn (compared without case or extra
    whitespace): a held-out score on those measures recall of training data, not what the model learned."""
    def questions(items: Iterable[dict]) -> set[str]:
        return {" ".join(m["content"].split()).casefold() for it in items for m in it["messages"]
                if m["role"] == "user" and isinstance(m["content"], str)}

    return questions(train) & questions(held_out)


def _item(source: str, messages: list[dict], answer: str | None) -> dict:
    validate(messages)
    return {"source": source, "messages": messages, "answer": answer}


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _tool_reply(tool: str, call: str, result: str, answer: str) -> dict:
    return {"role": "assistant", "content": [{"type": tool, "text": call}, {"type": f"{tool}_output", "text": result},
                                             {"type": "text", "text": answer}]}


def _invented(rng: random.Random, syllables: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables))


def _first_sentence(result: str) -> str:
    """The first sentence of the first hit in a search tool's formatted results ("[1] url\\npassage...")."""
    lines = result.splitlines()
    if len(lines) < 2 or not lines[0].startswith("[1]"):
        return ""
    text = lines[1].strip()
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


SFT_CONVERSATIONS = "sft_conversations"
ALL = "all"  # a dataset-wide asset's one partition


def save_conversations(store, items: list[dict], info: dict) -> None:
    """Writes the conversations as one parquet part (source, messages as JSON, answer) and commits it."""
    import polars as pl

    frame = pl.DataFrame({"source": [it["source"] for it in items],
                          "messages": [json.dumps(it["messages"], ensure_ascii=False) for it in items],
                          "answer": [it["answer"] for it in items]}, schema={"source": pl.String, "messages": pl.String,
                                                                              "answer": pl.String})
    store.write_part(SFT_CONVERSATIONS, ALL, ALL, "00000", frame)
    store.commit(SFT_CONVERSATIONS, ALL, ALL, ["00000"], info)


def load_conversations(store) -> list[dict]:
    """The committed sft_conversations, in their stored order; PartitionMissing (a FileNotFoundError) if none."""
    frame = store.read(SFT_CONVERSATIONS, ALL, ALL)
    return [{"source": r["source"], "messages": json.loads(r["messages"]), "answer": r["answer"]}
            for r in frame.iter_rows(named=True)]
