"""in_context_gain tells a model that copies from its context from one that cannot."""

from __future__ import annotations

import pytest
import torch

from training.evals import ICL_PROBE_LEN, in_context_gain, reward
from training.model import GPT, GPTConfig

VOCAB = 320  # 256 byte ids + 64 "merged" ids the probe draws from


def _train_on_halves_shown_twice(model: GPT, vocab: int, steps: int, rows: int) -> None:
    """AdamW on random sequences shown twice at the probe's distance: the second half is predictable only from the
    first."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        half = torch.randint(256, vocab, (rows, ICL_PROBE_LEN))
        x = torch.cat([half, half], dim=1)
        loss = model(x[:, :-1], targets=x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_a_model_trained_to_copy_gains_and_an_untrained_one_does_not():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, depth=2, seq_len=2 * ICL_PROBE_LEN))
    assert abs(in_context_gain(model, VOCAB)) < 0.05
    _train_on_halves_shown_twice(model, VOCAB, steps=120, rows=32)
    gain = in_context_gain(model, VOCAB)
    assert gain > 3.0, gain  # the first showing costs ln(64) = 4.16 nats a token; the copy close to nothing
    assert model.training, "the probe puts the model back in the mode it found it in"


def _reply(*parts: tuple[str, str]) -> list[dict]:
    return [{"type": kind, "text": text} for kind, text in parts]


def test_reward_reads_the_answer_after_the_last_tool_output():
    item = {"answer": "3"}
    good = _reply(("python", '"strawberry".count("r")'), ("python_output", "3"), ("text", 'There are 3 "r".'))
    assert reward(item, good) == 1.0
    # the right number inside the tool call or its output is not an answer the user reads
    assert reward(item, _reply(("python", "3"), ("python_output", "3"), ("text", "There are 2."))) == 0.0
    assert reward(item, _reply(("text", "There are 2."))) == 0.0
    assert reward({"answer": None}, good) == 0.0


def test_a_numeric_answer_must_be_the_last_number_so_listing_numbers_earns_nothing():
    assert reward({"answer": "13"}, _reply(("text", "Maybe 3 or 13"))) == 1.0
    assert reward({"answer": "3"}, _reply(("text", "Maybe 3 or 13"))) == 0.0
    assert reward({"answer": "13"}, _reply(("text", "Not 113."))) == 0.0  # a whole number, not a substring
    assert reward({"answer": "56088"}, _reply(("text", "123 × 456 = 56,088."))) == 1.0  # thousands separators
    assert reward({"answer": "I don't know"}, _reply(("text", "I don't know who that is."))) == 1.0


def test_pass_at_k_counts_a_problem_solved_by_any_sampled_reply_and_accuracy_the_greedy_one(two_tokenizers,
                                                                                              scripted_model):
    """A model that always answers 5: every reply solves "2 + 3" and none "2 + 4", greedy or sampled."""
    from training.evals import chat_accuracy, mean, sampled_accuracy

    tok = two_tokenizers[0]
    im_sep, im_end = tok.encode_special("<|im_sep|>"), tok.encode_special("<|im_end|>")
    model = scripted_model(tok.n_vocab, [im_sep, *tok.encode("5"), im_end])
    items = [{"source": source, "answer": answer, "messages": [{"role": "user", "content": q},
                                                               {"role": "assistant", "content": answer}]}
             for source, q, answer in (("sum", "2 + 3?", "5"), ("sum", "2 + 4?", "6"), ("five", "five?", "5"))]
    sampled = sampled_accuracy(model, tok, items, {}, k=3, temperature=1.0, seed=1)
    assert sampled == {"pass_at_k": {"five": 1.0, "sum": 0.5}, "pass_at_1": {"five": 1.0, "sum": 0.5}}
    greedy = chat_accuracy(model, tok, items, {})
    assert greedy["accuracy"] == {"five": 1.0, "sum": 0.5} and mean(greedy["accuracy"]) == 0.75
    assert greedy["reply_tokens"] == len(tok.encode("5")) + 1  # the answer and <|im_end|>


def test_a_tied_head_learns_to_copy_a_large_vocabulary_in_a_few_steps(tmp_path):
    """An untied head has to learn a map back to every token before copying pays (BENCHMARKS.md: at 4,096 ids,
    depth 2 or 4, nothing in 800 steps); sharing the embedding, a model of 1,024 ids copies within 100 steps, and
    the tie survives a checkpoint. The copy here is at the probe's own fixed distance, which a model can learn by
    position alone; copying at any distance needs more (training/data.quote, GPTConfig.smear_keys)."""
    from training.checkpoint import load_checkpoint, save_checkpoint

    vocab = 1024
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, depth=2, seq_len=2 * ICL_PROBE_LEN, tie_embeddings=True))
    assert model.lm_head.weight is model.embed_tokens.weight
    _train_on_halves_shown_twice(model, vocab, steps=100, rows=16)
    gain = in_context_gain(model, vocab)
    assert gain > 2.0, gain
    save_checkpoint(str(tmp_path), 1, model, None, {}, {}, tokenizer_sha256="a" * 64)
    loaded = load_checkpoint(str(tmp_path))["model"]
    assert loaded.lm_head.weight is loaded.embed_tokens.weight
    assert in_context_gain(loaded, vocab) == pytest.approx(gain, abs=1e-5)


def test_a_reply_cut_off_at_its_budget_earns_nothing_even_with_the_answer_in_it(two_tokenizers, scripted_model):
    """A model that writes the answer and then runs on: "right" by containment, but it never finished, and RL
    learned to exploit exactly that (BENCHMARKS.md), so it scores 0; the same answer ended with <|im_end|> scores 1."""
    from training.evals import chat_accuracy

    tok = two_tokenizers[0]
    im_sep, im_end = tok.encode_special("<|im_sep|>"), tok.encode_special("<|im_end|>")
    answer = "Oslo"  # tokens that never repeat, so the script is a chain
    items = [{"source": "search", "answer": answer, "messages": [{"role": "user", "content": "Where?"},
                                                                {"role": "assistant", "content": answer}]}]
    words = tok.encode(answer)
    looping = scripted_model(tok.n_vocab, [im_sep, *words, words[0]])  # "OsloOslo...": round and round
    assert chat_accuracy(looping, tok, items, {}, max_new_tokens=4 * len(words))["accuracy"] == {"search": 0.0}
    finished = scripted_model(tok.n_vocab, [im_sep, *words, im_end])
    assert chat_accuracy(finished, tok, items, {}, max_new_tokens=4 * len(words))["accuracy"] == {"search": 1.0}
