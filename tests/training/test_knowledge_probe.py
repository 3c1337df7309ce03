"""The knowledge probe: questions from definitional sentences, a program judge, the known/unknown split of sampled
answers, the conversations made of it and the before/after rates."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from training.chat import validate
from training.evals import reward
from training.knowledge_probe import (PHRASINGS, completion_prompt, conversations, judge, probe,
                                      questions_from_documents, rates, split_known)
from training.model import GPT, GPTConfig
from training.sft_data import HELD_OUT, IDK, TRAIN

DOCS = [
    {"id": "faq-pkg", "url": "https://www.debian.org/doc/manuals/debian-faq/pkgtools.en.html",
     "text": "APT is the package manager of Debian. It downloads packages from the repositories listed in "
             "sources.list and installs them in order. This is the recommended way to upgrade a system. The apt-get "
             "program is a command line front end for APT."},
    {"id": "faq-basic", "url": "https://www.debian.org/doc/manuals/debian-faq/basic-defs.en.html",
     "text": "An operating system is the set of basic programs and utilities that make your computer run.\n"
             "The kernel is the most fundamental program on the computer and does all the basic housekeeping. It "
             "is the first program loaded at boot. The Hurd is a collection of servers that run on top of a "
             "microkernel."},
    {"id": "py-venv", "url": "https://docs.python.org/3/library/venv.html",
     "text": "A virtual environment is a self-contained directory tree that contains a Python installation for a "
             "particular version of Python. The venv module is used to create them. The default is the directory "
             "called venv inside the project."},
    {"id": "py-install", "url": "https://docs.python.org/3/installing/index.html",
     "text": "The pip installer is the tool for installing packages from the Python Package Index. Wheel is a built "
             "package format. sys.path is a list of strings that specifies the search path for modules."},
    {"id": "faq-free", "url": "https://www.debian.org/doc/manuals/debian-faq/free.en.html",
     "text": "The Debian Free Software Guidelines document is the set of rules that decide what software counts "
             "as free. Sid is the unstable distribution. There is a mailing list for every package."},
    {"id": "about", "url": "https://www.debian.org/intro/about",
     "text": "Debian is a free operating system developed by volunteers. APT is a set of tools for managing "
             "Debian packages."},
]
SUBJECTS = {"APT", "the apt-get program", "an operating system", "the kernel", "the Hurd", "a virtual environment",
            "the pip installer", "Wheel", "Debian"}


def test_questions_are_definitions_of_distinct_subjects_with_junk_rejected():
    drops = Counter()
    questions = questions_from_documents(DOCS, 100, seed=0, drops=drops)
    assert sorted(q["subject"] for q in questions) == sorted(SUBJECTS), "APT once, though two documents define it"
    by_subject = {q["subject"]: q for q in questions}
    assert by_subject["the kernel"]["reference"] == ("the most fundamental program on the computer and does all "
                                                     "the basic housekeeping")
    assert by_subject["a virtual environment"]["reference"].startswith("a self-contained directory tree that")
    assert by_subject["Wheel"]["reference"] == "a built package format"
    assert by_subject["APT"]["reference"] in ("the package manager of Debian", "a set of tools for managing Debian "
                                                                               "packages")
    assert by_subject["the Hurd"] == {
        "question": by_subject["the Hurd"]["question"], "reference": "a collection of servers that run on top of a "
        "microkernel", "subject": "the Hurd", "doc_id": "faq-basic",
        "url": "https://www.debian.org/doc/manuals/debian-faq/basic-defs.en.html"}
    for q in questions:
        assert q["question"] in {p.format(subject=q["subject"]) for p in PHRASINGS}
    # "It is the first program...", "This is the recommended way...", "There is a mailing list..."; sys.path;
    # "The default is..."; the five-word guidelines; "the unstable distribution" (two content words)
    assert drops == Counter({"pronoun subject": 3, "code-like": 1, "generic subject": 1, "subject too long": 1,
                             "reference too short": 1})


def test_questions_are_reproducible_capped_and_vary_with_the_seed():
    first = questions_from_documents(DOCS, 4, seed=3)
    assert first == questions_from_documents(DOCS, 4, seed=3)
    assert len(first) == 4 and len({q["subject"].casefold() for q in first}) == 4
    assert {q["subject"] for q in first} <= SUBJECTS
    by_seed = [questions_from_documents(DOCS, 100, seed=s) for s in range(6)]
    assert len({tuple(q["question"] for q in qs) for qs in by_seed}) > 1
    used = {p for qs in by_seed for q in qs for p in PHRASINGS if q["question"] == p.format(subject=q["subject"])}
    assert used == set(PHRASINGS)
    assert questions_from_documents(DOCS, 0, seed=0) == []


@pytest.mark.parametrize("answer, reference, right", [
    ("It's Debian's package manager.", "the package manager of Debian", True),
    ("APT manages packages on Debian systems.", "the package manager of Debian", True),  # stems: packag, debian
    ("It is a directory of trees, self contained.", "a self-contained directory tree", True),
    ("APT is a popular brand of frozen yogurt sold in malls.", "the package manager of Debian", False),
    ("APT is APT.", "the package manager of Debian", False),
    ("APT is a tool for Debian.", "the package manager of Debian", False),  # one of three: fewer than two
    ("I don't know, maybe the package manager of Debian?", "the package manager of Debian", False),
    ("I do not know.", "the package manager of Debian", False),
    ("i DON'T KNOW the package manager of debian", "the package manager of Debian", False),
    ("Servers on a microkernel.", "a collection of servers that run on top of a microkernel", False),  # 2 of 5
    ("A collection of servers on a microkernel.", "a collection of servers that run on top of a microkernel", True),
    ("It is Debian.", "Debian", True),  # a one-word reference needs that word
    ("It is Ubuntu.", "Debian", False),
    ("It is software.", "free software", False),  # two content words: both
    ("It is free software.", "free software", True),
])
def test_judge(answer, reference, right):
    assert judge(answer, reference) is right


def test_judge_refuses_a_reference_it_cannot_check():
    with pytest.raises(ValueError, match="'it is the'"):
        judge("anything", "it is the")


def result(question: str, correct: int, said_idk: int, samples: int) -> dict:
    return {"question": question, "reference": "a built package format", "subject": question, "doc_id": "d",
            "url": "u", "answers": ["x"] * samples, "correct": correct, "said_idk": said_idk}


def test_split_and_rates_before_and_after():
    before = [result("q1", 4, 0, 4), result("q2", 2, 0, 4), result("q3", 1, 0, 4), result("q4", 0, 1, 4),
              result("q5", 0, 0, 4)]
    split = split_known(before, 4)
    assert {kind: [r["question"] for r in rs] for kind, rs in split.items()} == {
        "known": ["q1", "q2"], "unknown": ["q4", "q5"], "uncertain": ["q3"]}
    assert rates(before, split) == {"questions": 5, "known": 2, "unknown": 2, "uncertain": 1,
                                    "accuracy_on_known": 6 / 8, "hallucination_rate_on_unknown": 7 / 8,
                                    "idk_rate_on_unknown": 1 / 8}
    # after SFT, the same questions: q5 once right, which is no hallucination
    after = [result("q1", 3, 0, 4), result("q2", 4, 0, 4), result("q3", 4, 0, 4), result("q4", 0, 4, 4),
             result("q5", 1, 2, 4)]
    assert rates(after, split) == {"questions": 5, "known": 2, "unknown": 2, "uncertain": 1,
                                   "accuracy_on_known": 7 / 8, "hallucination_rate_on_unknown": 1 / 8,
                                   "idk_rate_on_unknown": 6 / 8}
    assert rates([], {"known": [], "unknown": [], "uncertain": []})["accuracy_on_known"] is None
    # five samples: known takes three right answers
    assert [len(v) for v in split_known([result("a", 3, 0, 5), result("b", 2, 0, 5)], 5).values()] == [1, 0, 1]
    with pytest.raises(ValueError, match="'q1' has 4 answers, not 5"):
        split_known(before, 5)


def test_a_model_that_always_says_the_same_thing_knows_one_question_and_not_the_other(two_tokenizers,
                                                                                       scripted_model):
    tok = two_tokenizers[1]
    docs = [{"id": "apt", "url": "https://example.org/apt", "text": "APT is the package manager of Debian."},
            {"id": "kernel", "url": "https://example.org/kernel",
             "text": "The kernel is the most fundamental program on the computer."}]
    questions = questions_from_documents(docs, 10, seed=0)
    assert sorted(q["subject"] for q in questions) == ["APT", "the kernel"]
    said = "The package manager."
    im_sep, im_end = tok.encode_special("<|im_sep|>"), tok.encode_special("<|im_end|>")
    model = scripted_model(tok.n_vocab, [im_sep, *tok.encode(said), im_end]).train()
    results = probe(model, tok, questions, samples=5, temperature=0.8, batch_size=4)
    assert model.training, "the model's mode is given back"
    by_subject = {r["subject"]: r for r in results}
    assert by_subject["APT"]["answers"] == by_subject["the kernel"]["answers"] == [said] * 5
    assert (by_subject["APT"]["correct"], by_subject["the kernel"]["correct"]) == (5, 0)
    assert by_subject["APT"]["said_idk"] == by_subject["the kernel"]["said_idk"] == 0

    split = split_known(results, 5)
    assert [r["subject"] for r in split["known"]] == ["APT"]
    assert [r["subject"] for r in split["unknown"]] == ["the kernel"]
    assert split["uncertain"] == []
    assert rates(results, split) == {"questions": 2, "known": 1, "unknown": 1, "uncertain": 0,
                                     "accuracy_on_known": 1.0, "hallucination_rate_on_unknown": 1.0,
                                     "idk_rate_on_unknown": 0.0}

    known, unknown = sorted(conversations(split), key=lambda it: it["source"])
    for item in (known, unknown):
        validate(item["messages"])
        assert item["split"] in {TRAIN, HELD_OUT}
    assert known["source"] == "probed_known" and known["answer"] == "the package manager of Debian"
    assert known["messages"] == [{"role": "user", "content": by_subject["APT"]["question"]},
                                 {"role": "assistant", "content": "APT is the package manager of Debian."}]
    assert unknown["source"] == "probed_unknown" and unknown["answer"] == IDK
    assert unknown["messages"][0]["content"] == by_subject["the kernel"]["question"]
    assert unknown["messages"][1]["content"].startswith("I don't know what the kernel is")

    # evaluation after SFT scores as the probe did: a paraphrase of the reference is right, a refusal is not
    def text(reply: str) -> list[dict]:
        return [{"type": "text", "text": reply}]

    assert reward(known, text(said)) == reward(known, text(known["messages"][1]["content"])) == 1.0
    assert reward(known, text("I don't know what APT is.")) == reward(known, text("A kernel module.")) == 0.0
    assert reward(unknown, text(said)) == 0.0 and reward(unknown, text(unknown["messages"][1]["content"])) == 1.0


def test_a_base_model_is_asked_to_continue_the_definition(two_tokenizers, scripted_model):
    """A base model has seen no chat: it continues "APT is", and its first line is the answer."""
    tok = two_tokenizers[1]
    docs = [{"id": "apt", "url": "https://example.org/apt", "text": "APT is the tool that packages processes."}]
    (question,) = questions_from_documents(docs, 10, seed=0)
    assert completion_prompt(question) == "APT is"
    piece = {tok.decode([i]): i for i in range(tok.n_vocab - 10)}  # whole tokens, so no token repeats in the script
    said = [piece[p] for p in (" pac", "kag", "es", " proces", "ses", "\n", "X")]
    model = scripted_model(tok.n_vocab, [tok.encode("APT is")[-1], *said, tok.eot_id])
    (result,) = probe(model, tok, [question], samples=2, chat=False)
    assert result["answers"] == ["packages processes"] * 2 and result["correct"] == 2


def test_a_question_gets_the_same_samples_in_any_batch(two_tokenizers):
    tok = two_tokenizers[0]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, depth=1, seq_len=128))
    questions = questions_from_documents(DOCS, 3, seed=1)
    together = probe(model, tok, questions, samples=3, max_new_tokens=8, batch_size=32)
    assert probe(model, tok, questions, samples=3, max_new_tokens=8, batch_size=2) == together
    assert probe(model, tok, questions[1:2], samples=3, max_new_tokens=8) == together[1:2]
    assert len({a for r in together for a in r["answers"]}) > 1, "each sample draws its own tokens"
    assert all(len(r["answers"]) == 3 for r in together)
