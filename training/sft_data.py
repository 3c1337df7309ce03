"""Conversations for supervised fine-tuning: the seeds' examples of ideal assistant behaviour, generated.

Each generator returns items {"source", "messages", "answer"}: `answer` is the text a correct reply must contain, so
the same items serve as evaluation and as verifiable RL tasks (nanochat's rule: tasks expose their checks). Tool
results in the conversations are real: the python tool's output comes from running the code in the sandbox, the
search tool's from the project's own index, so the model learns to trust what the tools actually return.

- identity: who the assistant is and who built it (the seeds: without this it would claim to be ChatGPT).
- sums: two-digit sums worked step by step in text (the seeds: spread the computation over tokens).
- arithmetic: products through the python tool (mental arithmetic over many digits is where models fail).
- letter counting: through the python tool (the seeds: models see tokens, not letters).
- unknown: questions about invented people and places answered "I don't know" (the seeds' hallucination fix).
- search: questions about the crawl answered from a search call's results (the seeds' "working memory").
- multi_turn: a follow-up that needs the first turn ("And the letter e?"), or two of the others in a row.

Every item is on the train or the held_out side (its "split"): split_of keys it by what the question is about, so
a held-out score measures what the model learned, not what it recalls (`shared_questions` checks it).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Callable, Iterable

from training.chat import validate

TRAIN, HELD_OUT = "train", "held_out"
NAME = "crawl2chat"
IDENTITY_ANSWER = (f"I am {NAME}, a small language model. The crawl2chat team built me by pretraining on a web "
                   "crawl and fine-tuning on example conversations.")
# held-out questions are phrased differently from every training one: a held-out score measures the format learned
IDENTITY_QUESTIONS = {
    TRAIN: ("Who are you?", "What is your name?", "Who built you?", "Who made you?", "Are you ChatGPT?",
            "What are you?", "Introduce yourself.", "Which company trained you?", "hi, who am I talking to?",
            "Are you a person?", "What should I call you?", "Who trained you?", "Tell me about yourself.",
            "Which model are you?"),
    HELD_OUT: ("What's your name?", "Who created you?", "Tell me who you are.", "Are you made by OpenAI?",
               "Hello! Who is this?", "Which assistant am I chatting with?"),
}
WORDS = ("strawberry", "banana", "mississippi", "bookkeeper", "committee", "occurrence", "parallel", "assessment",
         "balloon", "letter", "programming", "debian", "kernel", "package", "terminal", "repository", "dependency",
         "compiler", "abracadabra", "necessary", "embarrass", "accommodate", "possession", "success", "coffee",
         "address", "apple", "battery", "beginning", "bubble", "calendar", "cinnamon", "collection", "connection",
         "daddy", "dessert", "different", "discussion", "effect", "elephant", "engineer", "excellent", "football",
         "giraffe", "grammar", "hello", "hippopotamus", "illusion", "immediately", "kangaroo", "library",
         "lollipop", "mammal", "marshmallow", "millennium", "mirror", "noodle", "official", "opportunity",
         "pepper", "pizza", "puppy", "rabbit", "raccoon", "referee", "scissors", "shell", "skiing", "spaghetti",
         "summer", "support", "syllabus", "tattoo", "teepee", "tomorrow", "toffee", "umbrella", "vacuum",
         "villa", "waffle", "yellow", "zucchini", "database", "function", "variable", "network", "keyboard",
         "monitor", "processor", "software", "hardware", "interface")
SYLLABLES = ("vel", "mor", "tra", "quin", "zor", "bla", "ket", "rin", "dal", "oph", "sur", "nex", "ti", "gam", "lo")
UNKNOWN_TEMPLATES = (
    ("Who is {person}?", "I don't know who {person} is. I have no reliable information about them, and I would "
                         "rather say so than guess."),
    ("What is the capital of {place}?", "I don't know. I have no information about a country called {place}."),
    ("When was {person} born?", "I don't know. I have no reliable information about {person}."),
    ("What is {place} famous for?", "I don't know anything about {place}, so I can't say what it is famous for."),
)
IDK = "I don't know"
PRODUCT_QUESTIONS = {  # SFT's arithmetic and RL's phrased_arithmetic: products asked in many ways, held-out ones
    # phrased apart. With SFT's one phrasing ("What is {a} times {b}?") the model answered 90% of held-out products
    # asked that way or "How much is {a} times {b}?", and 0% of three other phrasings (bench_rl_phrasings)
    TRAIN: ("What is {a} times {b}?", "Multiply {a} by {b}.", "Compute the product of {a} and {b}.",
            "What's {a} x {b}?", "Calculate {a} times {b}.", "What is the product of {a} and {b}?",
            "Can you work out {a} * {b}?", "I need {a} multiplied by {b}.", "Give me {a} times {b}, please.",
            "Tell me the result of {a} x {b}.", "Work out {a} times {b} for me.", "Quick: {a} x {b}?",
            "Evaluate {a} * {b}.", "What does {a} times {b} come to?", "What is {a} × {b}?",
            # the number first too: with none, "{a} * {b} = ?" (held out) got 70% where the others got 90-100%
            "{a} times {b}?", "{a} x {b} is how much?", "{a} * {b}, please."),
    HELD_OUT: ("What do you get when you multiply {a} and {b}?", "{a} * {b} = ?", "What is {a} multiplied by {b}?"),
}
SEARCH_QUESTIONS = {  # with one phrasing ("What do the docs say about {query}?") the SFT model answered 62% of
    # held-out questions asked that way and 0-5% asked any other way (bench_rl_phrasings): it had learned the template,
    # not when to search. Held-out ones phrased apart. The query is never the question's first words: the call
    # copies it after a space (" {query}", see search), and a first word after no space is other tokens
    TRAIN: ("What do the docs say about {query}?", "Find {query} in the documentation.", "I need information on "
            "{query}.", "Tell me what the manual says about {query}.", "Can you check the docs on {query}?",
            "What is written about {query}?", "Explain {query}, from the documentation.", "Please search for {query}.",
            "Where do the docs mention {query}?", "On {query}, what does the manual say?", "Any docs about {query}?",
            "Quote the documentation on {query}.", "Give me the passage on {query}.", "Check the docs: {query}?",
            "What can you find on {query}?", "Read up on {query} for me.", "Do the docs cover {query}?",
            "Is there anything in the docs about {query}?", "Which passage covers {query}?",
            "Find me something on {query}, please."),
    HELD_OUT: ("What does the manual tell us about {query}?", "Please find documentation on {query}.",
               "What is known about {query}?"),
}
FOLLOW_UPS = {  # second questions that refer to the first; held-out ones phrased apart, as identity's. Many
    # training phrasings, so that the model learns to find the letter or number wherever the question puts it: with
    # seven of each, held-out follow-ups copied the first turn's letter or operand instead (BENCHMARKS.md)
    TRAIN: {"letter": ("And the letter {letter}?", "And how many {letter}'s?", "Same word, letter {letter}?",
                       "Now count the {letter}'s.", "How about {letter}?", 'And "{letter}"?', 'Now "{letter}".',
                       'How many "{letter}" are there?', 'And the "{letter}"s?', 'Count "{letter}" in it too.',
                       'Same question for "{letter}".', "Now do the letter {letter}.", 'Now do "{letter}".',
                       'How often does "{letter}" appear in it?', "And {letter}?", 'Try "{letter}" next.',
                       'How many times does "{letter}" occur there?', "Now the letter {letter}, please.",
                       'Also count "{letter}".', 'And for "{letter}"?', "{letter} now.", 'Then "{letter}"?'),
            # the number as often inside or at the start of the question as at its end: with it mostly last, the
            # model learned "the number that ends a question" and added the first question's operand instead
            "add": ("Now add {extra} to that.", "Put {extra} on top of it.", "Take that and add {extra}.",
                    "And that plus {extra}?", "{extra} more?", "Add on {extra}, please.", "Tack {extra} onto it.",
                    "Could you add {extra} to that number?", "With {extra} added, what is it?", "Plus {extra}?",
                    "{extra} more, what do we get?", "Increase it by {extra}.", "Sum it with {extra} for me.",
                    "If I add {extra}, what is the total?", "Now {extra} more, please.", "Count {extra} more on top.",
                    "And with {extra} added?", "Raise that by {extra} and tell me.", "Then add {extra}.",
                    "What's the total with {extra} added?")},
    HELD_OUT: {"letter": ('What about "{letter}"?', 'Next: "{letter}".', 'Count "{letter}" the same way.'),
               "add": ("Add {extra} to the result.", "What is the result plus {extra}?", "Go up by {extra}.")},
}

_FOLLOW_UP_PATTERNS = {kind: re.compile("|".join(
    re.escape(t).replace(r"\{letter\}", "[a-z]").replace(r"\{extra\}", r"\d+")
    for side in FOLLOW_UPS.values() for t in side[kind])) for kind in ("letter", "add")}
Tool = Callable[[str], str]
LOWER_WORD = re.compile(r"\b[a-z]{4,14}\b")


def split_of(key: str) -> str:
    """HELD_OUT for one key in ten (by a stable hash), TRAIN for the rest. Generators key their items by what a
    question is about (the operands, the word, the invented name, the passage), so no held-out item asks about
    anything a training item does, whatever the seed or the counts."""
    return HELD_OUT if zlib.crc32(key.encode()) % 10 == 0 else TRAIN


def identity(rng: random.Random, n: int, split: str = TRAIN) -> list[dict]:
    return [_item("identity", [_user(rng.choice(IDENTITY_QUESTIONS[split])), _assistant(IDENTITY_ANSWER)], NAME,
                  split) for _ in range(n)]


def sums(rng: random.Random, n: int, split: str = TRAIN) -> list[dict]:
    """Two-digit sums worked digit by digit in text (the seeds: spread the computation over tokens)."""
    items = []
    for _ in range(n):
        a, b = _draw(rng, split, lambda: (rng.randint(10, 99), rng.randint(10, 99)))
        ones = a % 10 + b % 10
        carry = ones // 10
        steps = (f"Ones: {a % 10} + {b % 10} = {ones}" + (f", write {ones % 10} and carry 1. " if carry else ". ")
                 + f"Tens: {a // 10} + {b // 10}" + (" + 1" if carry else "") + f" = {a // 10 + b // 10 + carry}. ")
        total = a + b
        items.append(_item("sums", [_user(f"What is {a} + {b}?"), _assistant(f"{steps}So {a} + {b} = {total}.")],
                           str(total), split))
    return items


def arithmetic(rng: random.Random, n: int, python: Tool, split: str = TRAIN, digits: tuple[int, int] = (4, 3),
               source: str = "arithmetic", phrased: bool = False) -> list[dict]:
    """Products of 3-4 digit numbers through the python tool (mental arithmetic over many digits is where models
    fail): the call copies the operands from the question, the answer the result from the tool's output. `digits`:
    the most digits of each operand, which has at least 3 (RL's long_arithmetic: (6, 4), longer than SFT's);
    `phrased`: each question in one of PRODUCT_QUESTIONS[split], else always "What is a times b?"."""
    items, most = [], (10 ** digits[0] - 1, 10 ** digits[1] - 1)
    for _ in range(n):
        a, b = _draw(rng, split, lambda: (rng.randint(100, most[0]), rng.randint(100, most[1])))
        code = f"{a} * {b}"
        result = python(code)
        question = rng.choice(PRODUCT_QUESTIONS[split]) if phrased else "What is {a} times {b}?"
        items.append(_item(source, [_user(question.format(a=a, b=b)), _tool_reply(
            "python", code, result, f"{a} × {b} = {result}.")], result, split))
    return items


def letter_counting(rng: random.Random, n: int, python: Tool, split: str = TRAIN,
                    words: Iterable[str] = WORDS) -> list[dict]:
    """How many times a letter is in a word, through the python tool. The call writes the word as the question
    does, quoted or after a space (`" puppy".count("p")`, the same count): its tokens are then the question's, and
    the model copies them (induction) rather than respelling " puppy" as "puppy", which a small model gets wrong."""
    words = [w for w in words if split_of(w) == split]
    items = []
    for _ in range(n):
        word = rng.choice(words)
        letter = _letter(rng, word)
        quoted = rng.random() < 1 / 3
        question = (f'How many "{letter}" are in the word "{word}"?' if quoted else rng.choice(
            (f"How many times does the letter {letter} appear in {word}?", f"Count the {letter}'s in {word}.")))
        items.append(_item("letter_counting", [_user(question), _count_reply(word, quoted, letter, python)],
                           str(word.count(letter)), split))
    return items


def crawl_words(passages: Iterable[dict], limit: int = 5000) -> list[str]:
    """WORDS and up to `limit` more lowercase words of 4-14 letters from the passages' text, sorted (the same list
    for the same passages): letter counting about the crawl's own vocabulary, not a hundred words learned by heart."""
    found = {w for p in passages for w in LOWER_WORD.findall(p["text"])}
    return sorted(set(WORDS) | set(sorted(found - set(WORDS), key=lambda w: (zlib.crc32(w.encode()), w))[:limit]))


def unknown(rng: random.Random, n: int, split: str = TRAIN) -> list[dict]:
    items = []
    for _ in range(n):
        # each name on the split's side by itself: a question names only one of them
        person = _draw(rng, split, lambda: (f"{_invented(rng).title()} {_invented(rng).title()}",))[0]
        place = _draw(rng, split, lambda: (_invented(rng, 3).title(),))[0]
        question, reply = rng.choice(UNKNOWN_TEMPLATES)
        items.append(_item("unknown", [_user(question.format(person=person, place=place)),
                                       _assistant(reply.format(person=person, place=place))], IDK, split))
    return items


def search(rng: random.Random, n: int, passages: list[dict], search_tool: Tool, split: str = TRAIN) -> list[dict]:
    """Questions whose answer is in a passage of the corpus, asked in one of SEARCH_QUESTIONS[split]: the assistant
    searches for the passage's longest words and answers with the first sentence of what came back. `passages`:
    dicts with "url" and "text"."""
    items = []
    for passage in rng.sample(passages, len(passages)):  # passages in random order until n questions are made
        if len(items) == n:
            break
        query = search_query(passage["text"])
        if not query:
            continue
        if split_of(query) != split:  # keyed by the query: two passages can give the same one
            continue
        result = search_tool(query)
        found = _first_sentence(result)
        if not found:
            continue
        # the call writes the words as the question does, after a space, and the quote starts a line as in the
        # result: the tokens to copy are the same tokens (see letter_counting)
        answer = f"The documentation says:\n{found}"
        question = rng.choice(SEARCH_QUESTIONS[split]).format(query=query)
        items.append(_item("search", [_user(question),
                                      _tool_reply("search", f" {query}", result, answer)], found, split))
    return items


def asked_query(item: dict) -> str:
    """The query a search item's reply searches for (its question's words, however the question is phrased)."""
    return item["messages"][1]["content"][0]["text"].strip()


def search_query(text: str, k: int = 3) -> str:
    """The k longest words of `text` (letters only, over 4 long), none a variant of another: no word inside another
    and no two sharing their first 6 letters, whatever the case. Variants ("unenforceable enforceable", "Install
    installed") made the model copy the query in loops: a copy resumes after the wrong one of two alike spans.
    "" when the text has fewer than k such words."""
    words = {w.strip(".,:;()\"'") for w in text.split()}
    chosen: list[str] = []
    for word in sorted((w for w in words if len(w) > 4 and w.isalpha()), key=lambda w: (-len(w), w)):
        low = word.lower()
        if not any(low in c.lower() or low[:6] == c.lower()[:6] for c in chosen):
            chosen.append(word)
        if len(chosen) == k:
            return " ".join(chosen)
    return ""


def multi_turn(rng: random.Random, n: int, pool: list[dict], python: Tool, split: str = TRAIN) -> list[dict]:
    """Two-turn chats scored on the second answer, half of them a second question that only makes sense with the
    first in context ("And the letter e?", "Now add 17 to that."; the tool call copies the word or the earlier
    result), half two of the pool's conversations in a row (a change of topic)."""
    pool = [it for it in pool if it["split"] == split and len(it["messages"]) == 2]
    followable = [it for it in pool if it["source"] in ("letter_counting", "arithmetic")]
    items = []
    for i in range(n):
        if i % 2 == 0 and followable:
            items.append(_follow_up(rng, rng.choice(followable), python))
        elif pool:
            first, second = rng.sample(pool, 2) if len(pool) > 1 else (pool[0], pool[0])
            items.append(_item("multi_turn", [*first["messages"], *second["messages"]], second["answer"], split))
    return items


def follow_ups(rng: random.Random, n: int, python: Tool, split: str = TRAIN,
               words: Iterable[str] = WORDS) -> list[dict]:
    """n two-turn chats whose second question refers to the first (multi_turn's follow-ups), each on a fresh
    product or letter count of `split`'s side."""
    firsts = [arithmetic(rng, 1, python, split)[0] if rng.random() < 0.5 else
              letter_counting(rng, 1, python, split, words)[0] for _ in range(n)]
    return [_follow_up(rng, first, python) for first in firsts]


def follow_up_kind(item: dict) -> str | None:
    """"letter" or "add" for a multi_turn item whose second question is a follow-up of FOLLOW_UPS' (it only makes
    sense after the first), None for a change of topic."""
    question = item["messages"][-2]["content"]
    return next((kind for kind, pattern in _FOLLOW_UP_PATTERNS.items()
                 if isinstance(question, str) and pattern.fullmatch(question)), None)


def mixture(seed: int, counts: dict[str, int], python: Tool, search_tool: Tool | None = None,
            passages: list[dict] | None = None, held_out: float = 0.1) -> list[dict]:
    """Every generator's items, shuffled, the same for the same seed and tools: counts[source] of each, a `held_out`
    share of them (at least one where a source has two or more) drawn from the held-out side of split_of;
    "multi_turn" builds on the others' items of the same side."""
    rng = random.Random(seed)
    words = crawl_words(passages or [])
    makers = {
        "identity": lambda k, split: identity(rng, k, split),
        "sums": lambda k, split: sums(rng, k, split),
        "arithmetic": lambda k, split: arithmetic(rng, k, python, split, phrased=True),
        "letter_counting": lambda k, split: letter_counting(rng, k, python, split, words),
        "unknown": lambda k, split: unknown(rng, k, split),
        "search": lambda k, split: search(rng, k, passages or [], search_tool, split) if search_tool else [],
    }
    unknown_sources = set(counts) - set(makers) - {"multi_turn"}
    if unknown_sources:
        raise ValueError(f"unknown SFT sources {sorted(unknown_sources)}; choose from {sorted(makers)} and multi_turn")
    sizes = {source: _held_out_size(k, held_out) for source, k in counts.items()}
    items = [item for source, k in counts.items() if source != "multi_turn"
             for split, size in ((TRAIN, k - sizes[source]), (HELD_OUT, sizes[source]))
             for item in makers[source](size, split)]
    k = counts.get("multi_turn", 0)
    items += multi_turn(rng, k - sizes.get("multi_turn", 0), items, python, TRAIN)
    items += multi_turn(rng, sizes.get("multi_turn", 0), items, python, HELD_OUT)
    rng.shuffle(items)
    return items


def shared_questions(train: Iterable[dict], held_out: Iterable[dict]) -> set[str]:
    """The user messages a held-out item shares with a training item, in any turn (compared without case or extra
    whitespace): a held-out score on those measures recall of training data, not what the model learned."""
    def questions(items: Iterable[dict]) -> set[str]:
        return {" ".join(m["content"].split()).casefold() for it in items for m in it["messages"]
                if m["role"] == "user" and isinstance(m["content"], str)}

    return questions(train) & questions(held_out)


def _held_out_size(n: int, share: float) -> int:
    return 0 if n < 2 or share <= 0 else min(n - 1, max(1, round(n * share)))


def _draw(rng: random.Random, split: str, make: Callable[[], tuple]) -> tuple:
    """make() again until what it made falls on `split`'s side of split_of."""
    while split_of(repr(drawn := make())) != split:
        pass
    return drawn


def _letter(rng: random.Random, word: str) -> str:
    return rng.choice(word) if rng.random() < 0.85 else rng.choice("xqzjv")


def _count_reply(word: str, quoted: bool, letter: str, python: Tool) -> dict:
    """The tool call and answer for `word` as the question wrote it: `"word"`, or after a space (letter_counting)."""
    written = f'"{word}"' if quoted else f'" {word}"'
    code = f'{written}.count("{letter}")'
    result = python(code)
    return _tool_reply("python", code, result, f'There {"is" if result == "1" else "are"} {result} "{letter}" in '
                                               f'{written if quoted else word}.')


def _follow_up(rng: random.Random, first: dict, python: Tool) -> dict:
    """`first` (a tool-using conversation) and a question about it that names only what it changes."""
    call = first["messages"][1]["content"][0]["text"]
    if first["source"] == "letter_counting":
        written = call.split('"')[1]
        word = written.strip()
        letter = _letter(rng, word)
        second = [_user(rng.choice(FOLLOW_UPS[first["split"]]["letter"]).format(letter=letter)),
                  _count_reply(word, written == word, letter, python)]
        answer = str(word.count(letter))
    else:
        earlier, extra = first["answer"], rng.randint(2, 99)
        code = f"{earlier} + {extra}"
        answer = python(code)
        second = [_user(rng.choice(FOLLOW_UPS[first["split"]]["add"]).format(extra=extra)),
                  _tool_reply("python", code, answer, f"{earlier} + {extra} = {answer}.")]
    return _item("multi_turn", [*first["messages"], *second], answer, first["split"])


def _item(source: str, messages: list[dict], answer: str | None, split: str) -> dict:
    validate(messages)
    return {"source": source, "messages": messages, "answer": answer, "split": split}


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
    """Writes the conversations as one parquet part (source, messages as JSON, answer, split) and commits it."""
    import polars as pl

    frame = pl.DataFrame({"source": [it["source"] for it in items],
                          "messages": [json.dumps(it["messages"], ensure_ascii=False) for it in items],
                          "answer": [it["answer"] for it in items], "split": [it["split"] for it in items]},
                         schema={"source": pl.String, "messages": pl.String, "answer": pl.String, "split": pl.String})
    store.write_part(SFT_CONVERSATIONS, ALL, ALL, "00000", frame)
    store.commit(SFT_CONVERSATIONS, ALL, ALL, ["00000"], info)


def load_conversations(store) -> list[dict]:
    """The committed sft_conversations, in their stored order; PartitionMissing (a FileNotFoundError) if none, a
    ValueError if they were written before conversations had a split."""
    frame = store.read(SFT_CONVERSATIONS, ALL, ALL)
    if "split" not in frame.columns:
        raise ValueError(f"{store.uri(SFT_CONVERSATIONS)} has no split column (written by an older version): "
                         "materialize sft_conversations again")
    return [{"source": r["source"], "messages": json.loads(r["messages"]), "answer": r["answer"], "split": r["split"]}
            for r in frame.iter_rows(named=True)]
