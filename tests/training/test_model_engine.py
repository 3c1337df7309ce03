"""The GPT and its sampling engine: a tiny model learns, the KV cache changes nothing but speed."""

from __future__ import annotations

import pytest
import torch

from training.engine import Engine, Sampling, sample_next
from training.model import GPT, GPTConfig, KVCache


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=97, depth=2, seq_len=64)).eval()


def test_the_depth_dial_sets_the_size():
    small, large = GPTConfig(vocab_size=50_304, depth=2), GPTConfig(vocab_size=50_304, depth=12)
    assert (small.width, small.n_head) == (128, 2) and (large.width, large.n_head) == (768, 12)
    params = GPT(GPTConfig(vocab_size=50_304, depth=12, seq_len=1024)).num_params()
    assert 120e6 < params < 200e6, params  # GPT-2 small's width; untied head and SwiGLU add to its 124M
    with pytest.raises(ValueError, match="depth"):
        GPTConfig(vocab_size=10, depth=0)


def test_a_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, depth=2, seq_len=32))
    batch = torch.randint(0, 64, (2, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = model(batch[:, :-1], batch[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 4.0 and loss.item() < 0.01, (first, loss.item())


@pytest.fixture(scope="module")
def smeared() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, depth=2, seq_len=64, smear_keys=True)).eval()
    with torch.no_grad():
        for layer in model.layers:  # a different share per head; zero-init o_proj would hide attention entirely
            layer.self_attn.smear.copy_(torch.linspace(-2, 2, model.config.n_head))
            layer.self_attn.o_proj.weight.normal_(std=0.02)
    return model


@pytest.fixture(scope="module")
def convolved() -> GPT:
    """qk_conv's taps drawn at random, with smeared keys too: the cache must carry two positions of each."""
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=97, depth=2, seq_len=64, smear_keys=True, qk_conv=3)).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.qk_taps.add_(torch.randn_like(layer.self_attn.qk_taps), alpha=0.5)
            layer.self_attn.o_proj.weight.normal_(std=0.02)
    return model


def test_qk_conv_mixes_only_earlier_positions(convolved):
    """Changing token t changes no logit before t (causal) and does change later ones; each mixed query or key is
    its taps' sum over its own and the two positions before it, zeros before the first."""
    x = torch.randint(0, 97, (1, 12))
    y = x.clone()
    y[0, 6] = (x[0, 6] + 1) % 97
    a, b = convolved(x), convolved(y)
    assert torch.allclose(a[0, :6], b[0, :6]) and not torch.allclose(a[0, 8], b[0, 8])
    attn = convolved.layers[0].self_attn
    qk = torch.randn(2, 1, attn.config.n_head, 5, attn.config.head_dim)
    mixed = attn._convolve(qk, 0, None, None)
    taps = attn.qk_taps.detach()[:, None, :, None, :, :]
    padded = torch.cat([torch.zeros_like(qk[:, :, :, :2]), qk], dim=3)
    want = sum(taps[..., lag] * padded[:, :, :, 2 - lag:7 - lag] for lag in range(3))
    assert torch.allclose(mixed, want) and torch.allclose(mixed[:, :, :, 0], taps[..., 0][:, :, :, 0] * qk[:, :, :, 0])
    with pytest.raises(ValueError, match="qk_conv"):
        GPTConfig(vocab_size=97, qk_conv=1)


@pytest.mark.parametrize("which", ["model", "smeared", "convolved"])
def test_cached_forward_equals_full_forward_for_ragged_rows(which, request):
    model = request.getfixturevalue(which)
    x = torch.randint(0, 97, (2, 20))
    full = model(x)
    cache = KVCache(model.config, 2, 64, "cpu", torch.float32)
    model(x[0:1, :7], cache=cache, rows=torch.tensor([0]))
    model(x[1:2, :11], cache=cache, rows=torch.tensor([1]))
    step = model(torch.stack([x[0, 7:8], x[1, 11:12]]), cache=cache)
    assert torch.allclose(step[0, 0], full[0, 7], atol=1e-5) and torch.allclose(step[1, 0], full[1, 11], atol=1e-5)
    assert cache.lengths.tolist() == [8, 12]
    more = model(x[1:2, 12:15], cache=cache, rows=torch.tensor([1]))  # several tokens after the cached ones
    assert torch.allclose(more[0], full[1, 12:15], atol=1e-5)


@pytest.mark.parametrize("sampling", [
    Sampling(max_new_tokens=40, temperature=0),
    Sampling(max_new_tokens=40, temperature=0.8, top_k=20, top_p=0.9, seed=7),
])
@pytest.mark.parametrize("which", ["model", "smeared", "convolved"])
def test_engine_with_cache_equals_engine_without(which, sampling, request):
    model = request.getfixturevalue(which)
    prompts = [[1, 2, 3, 4, 5], [9], [10, 11, 12]]
    cached = Engine(model).generate_all(prompts, sampling)
    assert cached == Engine(model, use_cache=False).generate_all(prompts, sampling)
    assert [len(r) for r in cached] == [40, 40, 40]


def test_stop_tokens_end_a_row_and_streaming_marks_it(model):
    prompts = [[1, 2, 3], [4, 5]]
    free = Engine(model).generate_all(prompts, Sampling(max_new_tokens=20, temperature=0))
    stop = free[0][3]
    steps = list(Engine(model).generate(prompts, Sampling(max_new_tokens=20, temperature=0, stop_tokens=(stop,))))
    first_row = [s[0] for s in steps]
    cut = free[0].index(stop)
    assert first_row[: cut + 1] == free[0][: cut + 1] and all(t is None for t in first_row[cut + 1 :])


def test_sampling_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, Sampling(temperature=0), None).item() == 1
    assert {sample_next(logits, Sampling(top_k=1), g).item() for _ in range(20)} == {1}
    assert {sample_next(logits, Sampling(top_p=0.01), g).item() for _ in range(20)} == {1}
    two = {sample_next(logits, Sampling(top_k=2, temperature=5.0), g).item() for _ in range(200)}
    assert two == {1, 3}
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("which", ["smeared", "convolved"])
def test_rows_that_stop_leave_the_batch_and_the_others_unchanged(which, use_cache, request):
    """Stopped rows are dropped from the batch (and the cache) as they pile up: each live row still gets exactly the
    tokens it gets alone, greedy and with its own random stream."""
    prompts = [[1, 2, 3, 4, 5], [9], [10, 11, 12], [20, 21], [30], [40, 41, 42, 43], [50, 3], [60]]
    engine = Engine(request.getfixturevalue(which), use_cache=use_cache)
    free = engine.generate_all(prompts, Sampling(max_new_tokens=30, temperature=0))
    stops = (free[1][2], free[4][5], free[6][9])  # rows stop at different steps, so the batch shrinks more than once
    for sampling, seeds in ((Sampling(max_new_tokens=30, temperature=0, stop_tokens=stops), None),
                            (Sampling(max_new_tokens=30, temperature=0.9, stop_tokens=stops), list(range(8)))):
        together = engine.generate_all(prompts, sampling, row_seeds=seeds)
        alone = [engine.generate_all([p], sampling, row_seeds=None if seeds is None else [s])[0]
                 for p, s in zip(prompts, seeds or [0] * 8)]
        assert together == alone
        lengths = [len(r) for r in together]
        assert min(lengths) < 10 and max(lengths) == 30 and len(set(lengths)) >= 3, lengths


def test_row_streams_sample_the_filtered_distribution():
    """One uniform draw a row, inverted through the batch's CDFs: the frequencies are the probabilities, and a token
    the filters removed is never drawn."""
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3]))[None].repeat(4000, 1)
    generators = [torch.Generator().manual_seed(s) for s in range(4000)]
    picked = sample_next(logits, Sampling(top_k=3), generators)
    counts = torch.bincount(picked, minlength=4).tolist()
    assert counts[0] == 0  # removed by top_k
    for token, p in ((1, 0.5 / 0.95), (2, 0.15 / 0.95), (3, 0.3 / 0.95)):
        assert abs(counts[token] / 4000 - p) < 0.03, counts
    again = sample_next(logits[:3], Sampling(top_k=3), [torch.Generator().manual_seed(s) for s in range(3)])
    assert again.tolist() == picked[:3].tolist()  # a row's draw depends on its own stream alone
