"""in_context_gain tells a model that copies from its context from one that cannot."""

from __future__ import annotations

import torch

from training.evals import ICL_PROBE_LEN, in_context_gain
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
