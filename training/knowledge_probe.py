"""What the model knows, probed: the seeds' "I don't know" recipe from its own pretraining data (Llama 3, 4.3.6).

Llama 3 aligns a model "to know what it knows" by probing it rather than by inventing names (sft_data.unknown):

1. questions_from_documents: definitional sentences of the pretraining documents ("APT is the package manager of
   Debian.") become questions ("What is APT?") whose reference answer is the defining phrase.
2. probe: the model answers each question several times, sampled; `judge`, a program, compares each answer with
   the reference.
3. split_known: a question answered right at least half the time is known, one never answered right is unknown;
   the rest are uncertain and left out of training (neither target would be true of the model).
4. conversations: known questions become answers built from the reference, unknown ones "I don't know" replies
   (the seeds: the model learns to refuse exactly where it would otherwise hallucinate).
5. rates: the probe's figures. Probe before SFT, split, train, probe the same questions after; rates(after, split)
   then tells whether knowns stayed right and how many unknowns turned from confident guesses into refusals
   (probe_sft_model does this for the held-out questions, after SFT; sft_model's metadata shows it).

Scoring after SFT: training/evals.py's reward scores probed_known items with `judge` (a correct paraphrase of the
reference counts) and probed_unknown ones, like every "I don't know" item, by the refusal in the reply.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable

import torch

from training.chat import parse_reply, render_prompt
from training.sft_data import IDK, _item, split_of

PHRASINGS = ("What is {subject}?", "What does {subject} mean?", "Can you tell me what {subject} is?")
KNOWN_REPLY = "{Subject} is {reference}."
UNKNOWN_REPLY = "I don't know what {subject} is; I don't have reliable information about it."

MAX_SUBJECT_WORDS = 4  # without its article: "the Debian package manager" is as long as a name gets
MIN_REFERENCE_CONTENT_WORDS = 3  # "a tool" defines nothing a judge could check
MAX_REFERENCE_WORDS = 30  # past this a "definition" is a paragraph run together
ARTICLES = ("the", "a", "an")

STOP_WORDS = frozenset("""
a about above after again all also an and any are as at be because been before being below between both but by can
could did do does doing down during each few for from further had has have having here how if in into is it its
itself just more most no nor not of off on once only or other our out over own same so some such than that the their
them then there these they this those through to too under until up very was we were what when where which while who
whom why will with would you your""".split())
# a subject that points elsewhere: its question means nothing outside the page
PRONOUNS = frozenset("""
it its this that these those there here he she they we you i one his her their our your my what which who whom each
everything something nothing anything everyone someone all both such another other""".split())
# a lone noun whose definition is the page's, not the world's ("The default is the first one.")
GENERIC = frozenset("""
result reason problem answer default goal idea difference following first second last next best only main solution
purpose output input value example case way thing point rest option aim""".split())

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # docs start sentences with lowercase names too (sys.path)
# the subject up to the first " is ", then a defining phrase opened by an article
DEFINITION = re.compile(r"^(?P<subject>.+?)\s+is\s+(?P<reference>(?:an?|the|one of)\s.+)\.$")
SUBJECT_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+'-]*$")
CODE = re.compile(r"[(){}\[\]<>=/\\|$#@`~^*;_%]|\w\.\w|::|->")
WORD = re.compile(r"[a-z0-9]+")
SAID_IDK = re.compile(r"\bI\s+(?:don['’]t|do\s+not)\s+know\b", re.IGNORECASE)


def questions_from_documents(docs: Iterable[dict], n: int, seed: int, drops: Counter | None = None) -> list[dict]:
    """Up to n questions {"question", "reference", "subject", "doc_id", "url"} from the definitional sentences of
    `docs` (dicts with "id", "url", "text"), at most one per subject (without its article, case-insensitive),
    chosen and phrased by random.Random(seed). Each rejected sentence that looked like a definition is counted in
    `drops` by reason."""
    candidates = []
    for doc in docs:
        for line in doc["text"].splitlines():
            for sentence in SENTENCE_END.split(line.strip()):
                found = _definition(sentence)
                if isinstance(found, str):
                    if drops is not None and found != "not a definition":
                        drops[found] += 1
                    continue
                candidates.append({**found, "doc_id": doc["id"], "url": doc["url"]})
    rng = random.Random(seed)
    rng.shuffle(candidates)
    chosen, seen = [], set()
    for candidate in candidates:
        if len(chosen) == n:
            break
        key = _subject_key(candidate["subject"])
        if key in seen:
            continue
        seen.add(key)
        question = rng.choice(PHRASINGS).format(subject=candidate["subject"])
        chosen.append({"question": question, "reference": candidate["reference"], "subject": candidate["subject"],
                       "doc_id": candidate["doc_id"], "url": candidate["url"]})
    return chosen


def _definition(sentence: str) -> dict | str:
    """{"subject", "reference"} of an "X is a/the Y." sentence, or why it is not one to ask about."""
    match = DEFINITION.match(sentence)
    if match is None:
        return "not a definition"
    if CODE.search(sentence):
        return "code-like"
    subject, reference = match["subject"], match["reference"]
    words = subject.split()
    if words[0].casefold() in ARTICLES:
        words = [words[0].lower(), *words[1:]]  # mid-sentence in the question: "What is the kernel?"
    head = words[1:] if words[0] in ARTICLES else words
    if not head:
        return "subject too short"
    if not all(SUBJECT_WORD.match(w) for w in head):
        return "subject not a noun phrase"
    if any(w.casefold() in PRONOUNS for w in head):
        return "pronoun subject"
    if len(head) > MAX_SUBJECT_WORDS:
        return "subject too long"
    if len("".join(head)) < 2:
        return "subject too short"
    if head[-1].casefold() in STOP_WORDS:  # "Work on is ..."
        return "subject not a noun phrase"
    if len(head) == 1 and head[0].casefold() in GENERIC:
        return "generic subject"
    if len(reference.split()) > MAX_REFERENCE_WORDS:
        return "reference too long"
    if len(content_words(reference)) < MIN_REFERENCE_CONTENT_WORDS:
        return "reference too short"
    return {"subject": " ".join(words), "reference": reference}


def _subject_key(subject: str) -> str:
    words = subject.casefold().split()
    return " ".join(words[1:] if words[0] in ARTICLES else words)


def content_words(text: str) -> set[str]:
    """The stems of `text`'s words that are neither stop words nor single characters."""
    return {_stem(w) for w in WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS}


def _stem(word: str) -> str:
    """Light stemming, enough to match a plural or a tense: directories/directory, files/file, managed/manage,
    processes/process (a word ending in "ss" keeps its s)."""
    if len(word) > 4 and not word.endswith("ss"):
        if word.endswith("ies"):
            return word[:-3] + "y"
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix):
                word = word[:-len(suffix)]
                break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def said_idk(answer: str) -> bool:
    return SAID_IDK.search(answer) is not None


def judge(answer: str, reference: str) -> bool:
    """Whether `answer` gives `reference`, by a program: an answer that says "I don't know" (or "I do not know")
    never does; otherwise the reference's content words (lowercased, stop words and single characters dropped,
    lightly stemmed) must appear in the answer's, at least half of them and at least two (all of them when the
    reference has fewer than two). Repeating the question's subject, or answering fluently about something else,
    earns nothing."""
    expected = content_words(reference)
    if not expected:
        raise ValueError(f"reference {reference!r} has no content words to judge an answer by")
    if said_idk(answer):
        return False
    hits = len(expected & content_words(answer))
    return hits >= max(math.ceil(len(expected) / 2), min(2, len(expected)))


def answer_text(tokenizer, ids: list[int]) -> str:
    """What a generated assistant turn says: its text parts, tool calls and outputs left out."""
    return "".join(p["text"] for p in parse_reply(tokenizer, ids) if p["type"] == "text")


def probe(model, tokenizer, questions: list[dict], samples: int = 5, temperature: float = 0.8,
          max_new_tokens: int = 48, seed: int = 0, batch_size: int = 32, chat: bool = True) -> list[dict]:
    """`samples` sampled answers to each question, judged against its reference: per question
    {**question, "answers": [text], "correct": int, "said_idk": int}.

    A chat model (chat=True) is asked the question in a user turn. A base model, which has never seen a chat, is
    asked as its documents put it: it continues "{Subject} is" (completion_prompt), its answer the continuation's
    first line. Each answer draws from its own random stream, seeded by (seed, question, sample), so a question gets
    the same answers whatever else is probed with it and however the rows fall into batches: a probe after SFT on
    the same questions differs from the one before only by the model."""
    from tqdm import tqdm

    from training.engine import Engine, Sampling

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    stop = tokenizer.encode_special("<|im_end|>") if chat else tokenizer.eot_id
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, stop_tokens=(stop,))
    prompts = [render_prompt(tokenizer, [{"role": "user", "content": q["question"]}]) if chat
               else [tokenizer.eot_id, *tokenizer.encode(completion_prompt(q))] for q in questions]
    rows = [(i, j) for i in range(len(questions)) for j in range(samples)]
    answers: list[list[str]] = [[] for _ in questions]
    was_training = model.training
    engine = Engine(model)  # puts the model in eval mode
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(rows), batch_size), desc="knowledge probe", unit="batch", disable=None):
                batch = rows[start:start + batch_size]
                seeds = [zlib.crc32(f"{seed}\0{questions[i]['question']}\0{j}".encode()) for i, j in batch]
                replies = engine.generate_all([prompts[i] for i, _ in batch], sampling, row_seeds=seeds)
                for (i, _), reply in zip(batch, replies, strict=True):
                    answers[i].append(answer_text(tokenizer, reply) if chat else _continuation(tokenizer, reply))
    finally:
        model.train(was_training)
    return [{**q, "answers": texts, "correct": sum(judge(t, q["reference"]) for t in texts),
             "said_idk": sum(said_idk(t) for t in texts)} for q, texts in zip(questions, answers, strict=True)]


def completion_prompt(question: dict) -> str:
    """How a base model is asked: the start of the definition the question came from ("APT is")."""
    return f"{_capitalized(question['subject'])} is"


def _continuation(tokenizer, ids: list[int]) -> str:
    text = tokenizer.decode([t for t in ids if t != tokenizer.eot_id])
    return text.strip().split("\n", 1)[0] if text.strip() else ""


def _capitalized(subject: str) -> str:
    return subject[0].upper() + subject[1:]


def split_known(results: list[dict], samples: int) -> dict[str, list[dict]]:
    """{"known": right at least ceil(samples / 2) times, "unknown": never right, "uncertain": the rest}."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    split: dict[str, list[dict]] = {"known": [], "unknown": [], "uncertain": []}
    for result in results:
        if len(result["answers"]) != samples:
            raise ValueError(f"{result['question']!r} has {len(result['answers'])} answers, not {samples}")
        if result["correct"] >= math.ceil(samples / 2):
            split["known"].append(result)
        elif result["correct"] == 0:
            split["unknown"].append(result)
        else:
            split["uncertain"].append(result)
    return split


def conversations(split: dict) -> list[dict]:
    """SFT items (sft_data's form) of the known and unknown questions; uncertain ones train nothing. An item's
    held-out side is split_of its subject, so one subject never sits on both sides."""
    items = []
    for q in split["known"]:
        reply = KNOWN_REPLY.format(Subject=_capitalized(q["subject"]), reference=q["reference"])
        items.append(_item("probed_known", _turns(q["question"], reply), q["reference"], _split(q)))
    for q in split["unknown"]:
        items.append(_item("probed_unknown", _turns(q["question"], UNKNOWN_REPLY.format(subject=q["subject"])), IDK,
                           _split(q)))
    return items


def _turns(question: str, reply: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


def _split(question: dict) -> str:
    return split_of(_subject_key(question["subject"]))


def rates(results: list[dict], split: dict) -> dict:
    """The probe's figures for `results` on the questions `split` sorted: pass the split of the probe before SFT
    with the results of either probe, to compare the same questions before and after.

    accuracy_on_known: the share of sampled answers to known questions judged right. On unknown questions, every
    sampled answer is an "I don't know" (idk_rate_on_unknown), right, or a confident wrong answer
    (hallucination_rate_on_unknown). A share over no answers is None."""
    def of(kind: str) -> list[dict]:
        keys = {(q["doc_id"], q["question"]) for q in split[kind]}
        return [r for r in results if (r["doc_id"], r["question"]) in keys]

    def share(count: int, total: int) -> float | None:
        return count / total if total else None

    known, unknown = of("known"), of("unknown")
    known_answers = sum(len(r["answers"]) for r in known)
    unknown_answers = sum(len(r["answers"]) for r in unknown)
    idk = sum(r["said_idk"] for r in unknown)
    wrong = unknown_answers - idk - sum(r["correct"] for r in unknown)  # judge never counts an IDK right
    return {"questions": len(results), "known": len(split["known"]), "unknown": len(split["unknown"]),
            "uncertain": len(split["uncertain"]),
            "accuracy_on_known": share(sum(r["correct"] for r in known), known_answers),
            "hallucination_rate_on_unknown": share(wrong, unknown_answers),
            "idk_rate_on_unknown": share(idk, unknown_answers)}


KNOWLEDGE_PROBE = "knowledge_probe"
VERDICTS = ("known", "unknown", "uncertain")


def probe_base_model(store, crawls: dict[str, list[str]], base_root: str, n: int, samples: int, temperature: float,
                     max_new_tokens: int, seed: int) -> dict:
    """The whole probe of the latest base checkpoint under `base_root` on the clean documents of `crawls`, saved
    as the knowledge_probe asset's part: {"split", "rates", "base_checkpoint", "skipped_sentences"}."""
    from pipeline.documents import iter_clean
    from pipeline.token_io import load_tokenizer
    from training.checkpoint import load_checkpoint, step_dir

    drops: Counter = Counter()
    docs = ({"id": i, "url": u, "text": t} for i, u, t in iter_clean(store, crawls, ("id", "url", "text")))
    questions = questions_from_documents(docs, n, seed, drops)
    tokenizer, sha = load_tokenizer(store)
    base = load_checkpoint(base_root, device="cpu", tokenizer_sha256=sha)
    results = probe(base["model"], tokenizer, questions, samples, temperature, max_new_tokens, seed, chat=False)
    split = split_known(results, samples)
    info = {"rates": rates(results, split), "base_checkpoint": f"{base_root.rstrip('/')}/{step_dir(base['step'])}",
            "skipped_sentences": dict(drops)}
    save_probe(store, split, info)
    return {"split": split, **info}


def probe_sft_model(store, sft_root: str, samples: int, temperature: float, max_new_tokens: int, seed: int) -> dict:
    """The probe's after: its held-out questions (SFT never trained on them; sft_data.split_of by subject) asked
    again of the latest SFT checkpoint under `sft_root`, now in a chat, with the same seeds; `rates` before (the
    base model's answers) and after on the same questions. PartitionMissing when no probe was committed."""
    from pipeline.token_io import load_tokenizer
    from training.checkpoint import load_checkpoint, step_dir

    split = load_probe(store)
    held = {verdict: [q for q in qs if _split(q) == "held_out"] for verdict, qs in split.items()}
    asked = held["known"] + held["unknown"]
    tokenizer, sha = load_tokenizer(store)
    sft = load_checkpoint(sft_root, device="cpu", tokenizer_sha256=sha)
    after = probe(sft["model"], tokenizer, asked, samples, temperature, max_new_tokens, seed, chat=True)
    return {"held_out_questions": len(asked), "before": rates(asked, held), "after": rates(after, held),
            "sft_checkpoint": f"{sft_root.rstrip('/')}/{step_dir(sft['step'])}",
            "examples": [{"question": r["question"], "reference": r["reference"], "answer": r["answers"][0]}
                         for r in after[:5]]}


def save_probe(store, split: dict, info: dict) -> None:
    """Writes every probed question with its answers and verdict (known, unknown, uncertain) as one parquet part
    of the knowledge_probe asset, and commits it; an empty probe is an empty part of the same schema."""
    import polars as pl

    rows = [{**{k: q[k] for k in ("question", "reference", "subject", "doc_id", "url", "answers", "correct",
                                  "said_idk")}, "verdict": verdict} for verdict in VERDICTS for q in split[verdict]]
    schema = {"question": pl.String, "reference": pl.String, "subject": pl.String, "doc_id": pl.String,
              "url": pl.String, "answers": pl.List(pl.String), "correct": pl.Int64, "said_idk": pl.Int64,
              "verdict": pl.String}
    frame = pl.DataFrame(rows, schema=schema)
    store.write_part(KNOWLEDGE_PROBE, "all", "all", "00000", frame)
    store.commit(KNOWLEDGE_PROBE, "all", "all", ["00000"], info)


def load_probe(store) -> dict[str, list[dict]]:
    """The committed probe as split_known's {verdict: [question results]}; PartitionMissing if none."""
    split: dict[str, list[dict]] = {v: [] for v in VERDICTS}
    for row in store.read(KNOWLEDGE_PROBE, "all", "all").iter_rows(named=True):
        verdict = row.pop("verdict")
        split[verdict].append(row)
    return split
