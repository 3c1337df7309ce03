"""in_context_gain tells a model that copies from its context from one that cannot."""

from __future__ import annotations

import torch

from training.evals import ICL_PROBE_LEN, in_context_gain, reward
from training.model import GPT, GPTConfig

VOCAB = 320  # 256 byte ids + 64 "merged" ids the probe draws from


def test_a_model_trained_to_copy_gains_and_an_untrained_one_does_not():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, depth=2, seq_len=2 * ICL_PROBE_LEN))
    assert abs(in_context_gain(model, VOCAB)) < 0.05
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):  # sequences shown twice: the second half is predictable only from the first
        half = torch.randint(256, VOCAB, (32, ICL_PROBE_LEN))
        x = torch.cat([half, half], dim=1)
        loss = model(x[:, :-1], targets=x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
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
