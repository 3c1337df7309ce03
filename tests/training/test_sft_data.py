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


def test_an_unknown_source_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown SFT sources \\['poems'\\]"):
        sft_data.mixture(0, {"poems": 1}, python_tool)


def test_shared_questions_are_found_in_any_turn_whatever_the_case():
    def chat(*questions: str) -> dict:
        return {"messages": [m for q in questions for m in ({"role": "user", "content": q},
                                                             {"role": "assistant", "content": "ok"})]}

    train = [chat("What is 2 + 2?"), chat("Who are you?", "Where do  you live?")]
    held_out = [chat("who are you?"), chat("Name a colour.", "Where do you live?"), chat("What is 2 + 3?")]
    assert sft_data.shared_questions(train, held_out) == {"who are you?", "where do you live?"}
    assert sft_data.shared_questions(train, [chat("What is 2 + 3?")]) == set()


def _every_tenth_held_out(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """training/sft.py's split of the stored conversations."""
    return [it for i, it in enumerate(items) if i % 10 != 9], [it for i, it in enumerate(items) if i % 10 == 9]


def _leaks(why: str):
    return pytest.mark.xfail(strict=True, reason="sft.py holds out every tenth conversation whatever its question, "
                             f"so held-out accuracy partly measures recall: {why}")


@pytest.mark.parametrize("counts", [
    # 8,100 sums, ~10^6 products, ~50,000 invented names: a question drawn twice is rare (a sum, now and then)
    pytest.param({"arithmetic": 40, "unknown": 60}, id="arithmetic+unknown"),
    pytest.param({"identity": 20}, id="identity", marks=_leaks(
        "identity asks one of 9 fixed questions, so at the default 150 every held-out one was trained on")),
    pytest.param({"letter_counting": 40}, id="letter_counting", marks=_leaks(
        "letter counting draws from 816 questions (25 words); at the default 200, 30-50% of the held-out ones "
        "were trained on")),
    pytest.param({"unknown": 20, "multi_turn": 10}, id="multi_turn", marks=_leaks(
        "a multi_turn conversation copies two others, so a held-out one's questions are in training, and a "
        "held-out single's question may be copied into a training multi_turn one")),
])
def test_the_held_out_tenth_asks_no_question_trained_on(counts):
    train, held_out = _every_tenth_held_out(sft_data.mixture(0, counts, python_tool))
    assert held_out and sft_data.shared_questions(train, held_out) == set()


def test_conversations_round_trip_through_the_store(items, tmp_path):
    store = Store(str(tmp_path))
    sft_data.save_conversations(store, items, {"by_source": COUNTS})
    assert sft_data.load_conversations(store) == items
