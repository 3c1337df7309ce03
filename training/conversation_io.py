"""Conversations from files, as items of training/sft_data.py's form: the common `messages` records that Hugging
Face chat datasets (smol-smoltalk, UltraChat, OpenAssistant's exports) are written in, and GSM8K's problems.

    items, report = read_import("s3://bucket/smoltalk/train-00000.parquet", storage_options)

A file is JSON Lines (.jsonl, .jsonl.gz: a record a line) or parquet (.parquet: a record a row, `messages` a list
of {role, content} structs as `datasets` writes it, or a JSON string), local or at any URI fsspec opens with the
storage options given. A parquet file is read whole, its needed columns only.

A record with `messages` becomes {"source": "imported", "messages", "answer"} (the record's answer if it has one,
as sft_data's own items do; else None), its messages kept as training/chat.py renders and trains on them: roles
system, user, assistant; a system message only first; turns alternating from user. A conversation with any other
role (tool, function) is skipped whole, since its turns make no sense with one cut out, and so is one whose turns
do not alternate: merging two user messages would make a message nobody wrote. An unanswered last user message is
dropped (nothing in it is trained on) and counted as trimmed.

A record with `question` and `answer` is a GSM8K problem, the answer its worked solution ending in "#### N": it
becomes {"source": "gsm8k", "messages": [question, the solution without its calculator annotations ("<<48/2=24>>")
and ending "The answer is N."], "answer": "N"}, which training/evals.py's reward checks.

Each item gets a split (train or held_out) from its first user message (sft_data.split_of).

A bad record is skipped and counted by reason, the first few by place (JSONL's line, counted from 1 as editors do;
parquet's row, from 0 as polars and `datasets` index it). A file with no usable record is a ValueError.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import fsspec

from training.chat import ROLES, validate
from training.sft_data import split_of

IMPORTED, GSM8K = "imported", "gsm8k"
FORMATS = (".jsonl", ".jsonl.gz", ".parquet")
PLACES_KEPT = 20  # skipped records listed with their line or row in a report; all of them are counted
CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's annotations of each computation, for a calculator tool
FINAL_ANSWER = re.compile(r"####\s*(\S+)\s*$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class BadRecord(ValueError):
    """A record the import skips; its message is the reason it is counted under, so it quotes nothing of the record
    but a role's name."""


@dataclass(slots=True)
class ImportReport:
    uri: str
    records: int = 0
    usable: int = 0
    imported: int = 0  # usable ones kept after the cap
    trimmed: int = 0  # conversations whose unanswered last user message was dropped
    skipped: Counter = field(default_factory=Counter)  # reason -> records
    places: list[str] = field(default_factory=list)  # "line 4: no messages", the first PLACES_KEPT

    def skip(self, place: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.places) < PLACES_KEPT:
            self.places.append(f"{place}: {reason}")

    def as_dict(self) -> dict:
        return {"records": self.records, "usable": self.usable, "imported": self.imported, "trimmed": self.trimmed,
                "skipped": dict(self.skipped.most_common()), "skipped_at": list(self.places)}


def file_format(uri: str) -> str:
    """"jsonl" or "parquet", by the URI's extension; ValueError naming the URI otherwise."""
    name = uri.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"cannot import {uri!r}: its extension is not one of {', '.join(FORMATS)}")


def read_import(uri: str, storage_options: dict | None = None, max_items: int | None = None,
                seed: int = 0) -> tuple[list[dict], ImportReport]:
    """The file's usable records as items, in file order, and what happened to each record. With `max_items`, a
    sample of that many (the same for the same seed): taking a file's first rows would take one slice of a dataset
    that is often sorted by its sources."""
    report = ImportReport(uri)
    items = []
    for place, record in _records(uri, storage_options or {}):
        report.records += 1
        try:
            item, trimmed = to_item(record)
        except BadRecord as e:
            report.skip(place, str(e))
            continue
        report.trimmed += trimmed
        items.append(item)
    report.usable = len(items)
    if not items:
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common()) or "no records"
        raise ValueError(f"{uri}: none of its {report.records} records can be imported ({reasons}; first: "
                         f"{report.places[:3]})")
    if max_items is not None and max_items < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), max_items))
        items = [items[i] for i in keep]
    report.imported = len(items)
    return items, report


def to_item(record: str | Mapping) -> tuple[dict, bool]:
    """(item, whether a last user message was dropped) of one record: a JSON line or a parquet row; BadRecord. The
    item's split is sft_data.split_of its first user message, so a question asked in several records of a file
    falls on one side."""
    item, trimmed = _item(record)
    first = next((m["content"] for m in item["messages"] if m["role"] == "user"), "")
    return {**item, "split": split_of(" ".join(str(first).split()).casefold())}, trimmed


def _item(record: str | Mapping) -> tuple[dict, bool]:
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError:
            raise BadRecord("not JSON") from None
    if not isinstance(record, Mapping):
        raise BadRecord("not a JSON object")
    if record.get("messages") is not None:
        messages, trimmed = conversation(record["messages"])
        answer = record.get("answer")  # sft_data's own items carry one
        answer = answer if isinstance(answer, str) else None
        return {"source": IMPORTED, "messages": messages, "answer": answer}, trimmed
    if "question" in record or "answer" in record:
        return gsm8k_item(record.get("question"), record.get("answer")), False
    raise BadRecord("no messages (nor a question and answer)")


def conversation(messages) -> tuple[list[dict], bool]:
    """The messages as training/chat.py's format, and whether an unanswered last user message was dropped."""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise BadRecord("messages is not valid JSON") from None
    if not isinstance(messages, list) or not messages:
        raise BadRecord("messages is empty or not a list")
    kept = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise BadRecord("a message is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise BadRecord(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not (content.strip() if isinstance(content, str) else content):
            if role == "system":  # an empty system prompt says nothing; exports often carry one
                continue
            raise BadRecord("empty message")
        if not isinstance(content, (str, list)):
            raise BadRecord("content is not a string")
        kept.append({"role": role, "content": content})
    if any(m["role"] == "system" for m in kept[1:]):
        raise BadRecord("system message not first")
    turns = [m["role"] for m in kept if m["role"] != "system"]
    if any(role != ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(turns)):
        raise BadRecord("turns do not alternate user, assistant")
    trimmed = bool(turns) and turns[-1] == "user"
    if trimmed:
        kept.pop()
    if not any(m["role"] == "assistant" for m in kept):
        raise BadRecord("no assistant reply")
    try:
        validate(kept)  # what is left for it: an assistant's list of parts, and a user's content given as parts
    except ValueError:
        raise BadRecord("content is not a string or training/chat.py's parts") from None
    return kept, trimmed


def gsm8k_item(question, answer) -> dict:
    """A GSM8K problem as a conversation whose reply is its worked solution, and its final number to check."""
    if not isinstance(question, str) or not question.strip():
        raise BadRecord("no question")
    match = FINAL_ANSWER.search(answer) if isinstance(answer, str) else None
    number = match.group(1).replace(",", "") if match else ""
    if not NUMBER.fullmatch(number):
        raise BadRecord("answer does not end in '#### N'")
    solution = CALCULATOR.sub("", answer[:match.start()]).strip()
    reply = f"{solution}\nThe answer is {number}." if solution else f"The answer is {number}."
    return {"source": GSM8K, "messages": [{"role": "user", "content": question.strip()},
                                          {"role": "assistant", "content": reply}], "answer": number}


def _records(uri: str, storage_options: dict) -> Iterator[tuple[str, str | dict]]:
    """(place, record) of each record: a JSON line's text, or a parquet row as a dict."""
    if file_format(uri) == "jsonl":
        with fsspec.open(uri, "rt", encoding="utf-8", compression="infer", **storage_options) as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield f"line {number}", line
        return
    import polars as pl

    with fsspec.open(uri, "rb", **storage_options) as f:
        columns = [c for c in pl.read_parquet_schema(f) if c in ("messages", "question", "answer")]
        if not columns:
            raise ValueError(f"{uri}: no column 'messages' (nor 'question' and 'answer') to import")
        f.seek(0)
        frame = pl.read_parquet(f, columns=columns)
    for row, record in enumerate(frame.iter_rows(named=True)):
        yield f"row {row}", record
