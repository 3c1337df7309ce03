"""The generated SFT conversations: valid, reproducible, and their tool results and answers true."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.search import SearchIndex
from pipeline.storage import Store
from training import sft_data
from training.chat import validate
from training.tools import python_tool, search_tool

DOCS = [("d1", "https://example.org/apt", "APT resolves package dependencies automatically. It downloads packages "
         "from repositories listed in sources.list and installs them in order."),
        ("d2", "https://example.org/kernel", "The kernel schedules processes and manages memory. Modules extend the "
         "running kernel without a reboot.")]
COUNTS = {"identity": 3, "arithmetic": 6, "letter_counting": 6, "unknown": 4, "search": 2, "multi_turn": 3}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    index = SearchIndex.build(DOCS)
    passages = [{"url": u, "text": t} for u, t in zip(index.passages["url"], index.passages["text"])]
    return sft_data.mixture(7, COUNTS, python_tool, search_tool(index), passages)


def test_the_mixture_has_what_was_asked_valid_and_reproducible(items):
    assert sorted(COUNTS) == sorted({it["source"] for it in items})
    for source, n in COUNTS.items():
        assert sum(it["source"] == source for it in items) == n
    for it in items:
        validate(it["messages"])
        assert it["answer"]
    assert [it["source"] for it in items] != [s for s, n in COUNTS.items() for _ in range(n)], "shuffled"
    index = SearchIndex.build(DOCS)
    passages = [{"url": u, "text": t} for u, t in zip(index.passages["url"], index.passages["text"])]
    assert sft_data.mixture(7, COUNTS, python_tool, search_tool(index), passages) == items


def test_a_multi_turn_conversation_is_two_of_the_others_in_a_row(items):
    singles = {json.dumps(it["messages"]): it for it in items if it["source"] != "multi_turn"}
    for it in (it for it in items if it["source"] == "multi_turn"):
        first, second = (json.dumps(it["messages"][i:i + 2]) for i in (0, 2))
        assert len(it["messages"]) == 4 and first in singles and second in singles
        assert it["answer"] == singles[second]["answer"]  # scored on the second question


def test_tool_results_are_real_and_answers_true(items):
    for it in (it for it in items if it["source"] != "multi_turn"):
        question, reply = it["messages"][0]["content"], it["messages"][1]["content"]
        if it["source"] == "letter_counting":
            word, letter = re.search(r'"(\w+)"\.count\("(\w)"\)', reply[0]["text"]).groups()
            assert word in question and letter in question
            assert reply[1]["text"] == it["answer"] == str(word.count(letter))
        elif it["source"] == "arithmetic":
            a, op, b = re.search(r"(\d+) (\+|times) (\d+)", question).groups()
            expected = int(a) + int(b) if op == "+" else int(a) * int(b)
            assert it["answer"] == str(expected)
            text = reply if isinstance(reply, str) else reply[-1]["text"]
            assert text.endswith(f"{expected}.")
        elif it["source"] == "unknown":
            assert reply.startswith("I don't know")
        elif it["source"] == "search":
            assert reply[0]["type"] == "search" and reply[1]["text"].startswith("[1] https://example.org/")
            assert it["answer"] in reply[1]["text"] and it["answer"] in reply[2]["text"]
        else:
            assert "crawl2chat" in reply


def test_user_conversations_are_read_and_bad_lines_named():
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
    assert sft_data.read_conversations([good, "", good])[1]["source"] == "user"
    with pytest.raises(ValueError, match="line 2: turn 0 is 'assistant'"):
        sft_data.read_conversations([good, '{"messages": [{"role": "assistant", "content": "x"}]}'])
    with pytest.raises(ValueError, match="line 1"):
        sft_data.read_conversations(["not json"])
    with pytest.raises(ValueError, match="unknown SFT sources \\['poems'\\]"):
        sft_data.mixture(0, {"poems": 1}, python_tool)


def test_conversations_round_trip_through_the_store(items, tmp_path):
    store = Store(str(tmp_path))
    sft_data.save_conversations(store, items, {"by_source": COUNTS})
    assert sft_data.load_conversations(store) == items
