"""The generated SFT conversations: valid, reproducible, and their tool results and answers true."""

from __future__ import annotations

import json
import random
import re

import pytest

from pipeline.search import SearchIndex
from pipeline.storage import Store
from training import sft_data
from training.chat import validate
from training.tools import generator_python_tool, python_tool, search_tool

DOCS = [("d1", "https://example.org/apt", "APT resolves package dependencies automatically. It downloads packages "
         "from repositories listed in sources.list and installs them in order."),
        ("d2", "https://example.org/kernel", "The kernel schedules processes and manages memory. Modules extend the "
         "running kernel without a reboot.")]
DOCS += [(f"w{i}", f"https://example.org/{a}", f"The {a} service keeps {b} records. It rotates {c} logs weekly.")
         for i, (a, b, c) in enumerate(zip(*[iter(sft_data.WORDS[:90])] * 3))]  # enough passages for both splits
COUNTS = {"identity": 3, "sums": 4, "arithmetic": 6, "letter_counting": 6, "unknown": 4, "search": 2, "multi_turn": 3}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    index = SearchIndex.build(DOCS)
    passages = [{"url": u, "text": t} for u, t in zip(index.passages["url"], index.passages["text"])]
    return sft_data.mixture(7, COUNTS, generator_python_tool, search_tool(index), passages)


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
    assert sft_data.mixture(7, COUNTS, generator_python_tool, search_tool(index), passages) == items


def test_tool_results_are_real_and_answers_true(items):
    for it in (it for it in items if it["source"] != "multi_turn"):
        question, reply = it["messages"][0]["content"], it["messages"][1]["content"]
        if it["source"] == "letter_counting":
            written, letter = re.search(r'^(" ?\w+")\.count\("(\w)"\)$', reply[0]["text"]).groups()
            word = written.strip('" ')
            # the call copies the word as the question wrote it, so its tokens are the question's
            assert (written if written == f'"{word}"' else f" {word}") in question and letter in question
            assert reply[1]["text"] == it["answer"] == str(word.count(letter))
        elif it["source"] in ("sums", "arithmetic"):
            a, b = map(int, re.findall(r"\d+", question))
            expected = a + b if it["source"] == "sums" else a * b
            assert it["answer"] == str(expected)
            text = reply if isinstance(reply, str) else reply[-1]["text"]
            assert text.endswith(f"{expected}.")
        elif it["source"] == "unknown":
            assert reply.startswith("I don't know")
        elif it["source"] == "search":
            assert reply[0]["type"] == "search" and reply[1]["text"].startswith("[1] https://example.org/")
            assert reply[0]["text"].startswith(" ") and reply[0]["text"] in question  # the question's own tokens
            assert it["answer"] in reply[1]["text"] and it["answer"] in reply[2]["text"]
        else:
            assert "crawl2chat" in reply


def test_the_generators_python_results_are_what_the_sandbox_prints(items):
    # generator_python_tool evaluates the generators' code in this process: the sandbox a model's calls run in
    # (bubblewrap where it can run, as make test has it) must print the same for every template
    convs = items + sft_data.follow_ups(random.Random(1), 8, generator_python_tool)
    kinds = {sft_data.follow_up_kind(it) for it in convs if it["source"] == "multi_turn"}
    assert {"add", "letter"} <= kinds
    calls = [(m["content"][0]["text"], m["content"][1]["text"]) for it in convs for m in it["messages"]
             if m["role"] == "assistant" and not isinstance(m["content"], str) and m["content"][0]["type"] == "python"]
    assert any("*" in code for code, _ in calls) and any("+" in code for code, _ in calls)
    assert any(".count(" in code for code, _ in calls)
    for code, result in calls:
        assert python_tool(code) == result == generator_python_tool(code), code
    with pytest.raises(ZeroDivisionError):  # a broken template fails the generator loudly, not as a tool reply
        generator_python_tool("1 / 0")


def test_an_unknown_source_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown SFT sources \\['poems'\\]"):
        sft_data.mixture(0, {"poems": 1}, generator_python_tool)


def test_shared_questions_are_found_in_any_turn_whatever_the_case():
    def chat(*questions: str) -> dict:
        return {"messages": [m for q in questions for m in ({"role": "user", "content": q},
                                                             {"role": "assistant", "content": "ok"})]}

    train = [chat("What is 2 + 2?"), chat("Who are you?", "Where do  you live?")]
    held_out = [chat("who are you?"), chat("Name a colour.", "Where do you live?"), chat("What is 2 + 3?")]
    assert sft_data.shared_questions(train, held_out) == {"who are you?", "where do you live?"}
    assert sft_data.shared_questions(train, [chat("What is 2 + 3?")]) == set()


@pytest.mark.parametrize("counts", [
    {"arithmetic": 40, "unknown": 60}, {"identity": 20}, {"letter_counting": 200}, {"unknown": 20, "multi_turn": 40},
    {"sums": 30, "arithmetic": 30, "letter_counting": 30, "multi_turn": 60}], ids=str)
def test_held_out_items_ask_no_question_trained_on(counts):
    items = sft_data.mixture(0, counts, generator_python_tool)
    train = [it for it in items if it["split"] == sft_data.TRAIN]
    held_out = [it for it in items if it["split"] == sft_data.HELD_OUT]
    assert len(held_out) == sum(round(k / 10) for k in counts.values())
    assert sft_data.shared_questions(train, held_out) == set()


def test_held_out_questions_share_no_invented_name_or_search_query_with_training():
    # a question names one invented person or place, and two passages can give the same search query: each is
    # keyed on its own (at 600 unknowns, keying the pair let "What is the capital of Nexketzor?" land on both sides)
    items = sft_data.unknown(random.Random(0), 540, sft_data.TRAIN) + sft_data.unknown(random.Random(1), 60,
                                                                                        sft_data.HELD_OUT)
    assert sft_data.shared_questions(items[:540], items[540:]) == set()
    docs = [(f"v{i}", f"https://example.org/v{i}", f"Rotating journald keeps {i} logfiles.") for i in range(60)]
    index = SearchIndex.build(docs)  # 60 passages, one query: "Rotating journald logfiles"
    passages = [{"url": u, "text": t} for u, t in zip(index.passages["url"], index.passages["text"])]
    splits = {split: sft_data.search(random.Random(0), 5, passages, search_tool(index), split)
              for split in (sft_data.TRAIN, sft_data.HELD_OUT)}
    assert len(splits[sft_data.TRAIN]) + len(splits[sft_data.HELD_OUT]) == 5  # the query falls on one side only
    assert splits[sft_data.split_of("Rotating journald logfiles")]


def test_held_out_letter_counting_asks_about_words_never_trained_on():
    items = sft_data.mixture(3, {"letter_counting": 300}, generator_python_tool)
    words = {split: {re.search(r'" ?(\w+)"\.count', it["messages"][1]["content"][0]["text"]).group(1)
                     for it in items if it["split"] == split} for split in (sft_data.TRAIN, sft_data.HELD_OUT)}
    assert len(words[sft_data.HELD_OUT]) >= 5 and not words[sft_data.TRAIN] & words[sft_data.HELD_OUT]


def test_letter_counting_asks_about_the_crawls_words_too():
    passages = [{"url": "u", "text": "A zebrafish can swim; the Knapsack holds 12 widgets and qwertyuiopasdfghjkl."}]
    words = sft_data.crawl_words(passages)
    assert {"zebrafish", "swim", "holds", "widgets"} <= set(words) and set(sft_data.WORDS) <= set(words)
    assert "Knapsack" not in words and "knapsack" not in words and "qwertyuiopasdfghjkl" not in words  # 4-14 letters
    assert words == sorted(words) == sft_data.crawl_words(list(passages))
    assert len(sft_data.crawl_words(passages, limit=1)) == len(sft_data.WORDS) + 1
    items = sft_data.letter_counting(random.Random(0), 200, generator_python_tool, words=["zebrafish", "holds"])
    assert {re.search(r'" ?(\w+)"', it["messages"][1]["content"][0]["text"]).group(1) for it in items} <= {
        "zebrafish", "holds"}


def test_a_multi_turn_conversation_is_two_others_in_a_row_or_a_follow_up_that_needs_the_first_turn():
    items = sft_data.mixture(1, {"identity": 10, "letter_counting": 20, "arithmetic": 20, "multi_turn": 40},
                             generator_python_tool)
    singles = {json.dumps(it["messages"]): it for it in items if it["source"] != "multi_turn"}
    follow_ups = 0
    for it in (it for it in items if it["source"] == "multi_turn"):
        first, second = (json.dumps(it["messages"][i:i + 2]) for i in (0, 2))
        assert len(it["messages"]) == 4 and singles[first]["split"] == it["split"]
        if second in singles:
            assert it["answer"] == singles[second]["answer"]  # scored on the second question
            assert sft_data.follow_up_kind(it) is None  # a change of topic
            continue
        follow_ups += 1
        first_turn, question = json.dumps(it["messages"][1]), it["messages"][2]["content"]
        call, output = (part["text"] for part in it["messages"][3]["content"][:2])
        if ".count(" in call:  # "And the letter e?": the word is named in the first turn only
            word = call.split('"')[1]
            assert word in first_turn and word not in question and output == str(word.count(call[-3]))
            assert sft_data.follow_up_kind(it) == "letter"
        else:  # "Now add 17 to that.": the earlier result is copied from the first turn's tool output
            earlier, extra = call.split(" + ")
            assert earlier == it["messages"][1]["content"][1]["text"] and earlier not in question
            assert output == str(int(earlier) + int(extra))
            assert sft_data.follow_up_kind(it) == "add"
        assert it["answer"] == output
    assert follow_ups >= 15


def test_conversations_round_trip_through_the_store(items, tmp_path):
    store = Store(str(tmp_path))
    sft_data.save_conversations(store, items, {"by_source": COUNTS})
    assert sft_data.load_conversations(store) == items


@pytest.mark.parametrize("text, query", [
    ("Amendments make the clause unenforceable or enforceable again.", "unenforceable Amendments clause"),
    ("Install the installed installation on Debian systems.", "installation systems Debian"),
    ("Install the installed installation of Debian on debian.", ""),  # two words left: no query
    ("Configure logfiles with journald rotating settings.", "Configure journald logfiles"),
])
def test_a_search_query_holds_no_two_variants_of_one_word(text, query):
    # variants ("unenforceable enforceable") made the model copy the query in loops; "" when fewer than 3 remain
    assert sft_data.search_query(text) == query


def test_search_questions_are_phrased_apart_and_put_the_query_after_a_space():
    train, held_out = (set(sft_data.SEARCH_QUESTIONS[side]) for side in (sft_data.TRAIN, sft_data.HELD_OUT))
    assert len(train) >= 15 and held_out and not train & held_out
    assert all(" {query}" in q and not q.startswith("{query}") for q in train | held_out)  # the call's tokens
