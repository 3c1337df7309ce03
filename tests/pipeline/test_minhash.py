"""MinHash signatures against datasketch's own MinHash, shingling, config keys and band hashes."""

from __future__ import annotations

import dataclasses

import datasketch
import numpy as np
import pytest

from pipeline import minhash
from pipeline.minhash import MinHashConfig, MinHasher, band_hashes, normalize, shingles

LONG = " ".join(f"word{i % 377} filler{i % 91}" for i in range(1500))  # 3,000 words, many repeated shingles
TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again.",
    "",
    "!!! --- ???",  # punctuation only: no words, no shingles
    "two words",
    "exactly five words in here",
    "Ünïcödé — Straße, naïve café; 東京 は 日本 の 首都 です。 Москва́ — столица России!",
    "नमस्ते दुनिया यह एक परीक्षण वाक्य है जो हिन्दी में लिखा गया",
    "tabs\tand\nnewlines\u00a0and\u2003odd   spaces, “curly quotes” and emoji 🙂 between words",
    LONG,
]
CONFIGS = [
    MinHashConfig(),
    MinHashConfig(n_grams=3, bands=4, rows=5, seed=42),
    MinHashConfig(n_grams=2, bands=3, rows=3, seed=7, scheme="legacy"),
]


def datasketch_signature(text: str, config: MinHashConfig) -> np.ndarray:
    """The reference: one datasketch MinHash updated with each shingle in turn."""
    m = datasketch.MinHash(num_perm=config.num_perm, seed=config.seed, scheme=config.scheme)
    for s in shingles(text, config.n_grams):
        m.update(s)
    return m.hashvalues


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.n_grams}g-{c.bands}x{c.rows}-s{c.seed}-{c.scheme}")
def test_signatures_are_bit_identical_to_datasketch(config):
    sigs = MinHasher(config).signatures(TEXTS)
    assert sigs.dtype == np.uint64 and sigs.shape == (len(TEXTS), config.num_perm)
    for text, sig in zip(TEXTS, sigs):
        np.testing.assert_array_equal(sig, datasketch_signature(text, config).astype(np.uint64), err_msg=text[:40])


def test_document_split_over_chunks_gets_the_minimum_of_both_parts(monkeypatch):
    config = MinHashConfig()
    whole = MinHasher(config).signatures(TEXTS)
    monkeypatch.setattr(minhash, "_CHUNK_ROWS", 7)  # every long document spans many chunks
    np.testing.assert_array_equal(MinHasher(config).signatures(TEXTS), whole)


def test_a_text_without_words_keeps_the_empty_signature():
    sigs = MinHasher(MinHashConfig()).signatures(["", " \n\t ", "...!?"])
    assert (sigs == 2**32 - 1).all()
    assert MinHasher(MinHashConfig()).signatures([]).shape == (0, 112)


def test_normalize_lowercases_strips_punctuation_and_collapses_whitespace():
    assert normalize("  Hello,   WORLD!\n\nIt's\t“fine” — really…  ") == "hello world it s fine really"
    assert normalize("Straße: naïve CAFÉ.") == "straße naïve café"
    assert normalize("price $5+3=8 € 🙂 ok") == "price 5 3 8 ok"
    assert normalize("a\u00a0b\u2003c\x00d") == "a b c d"
    assert normalize("नमस्ते, दुनिया।") == "नमस्ते दुनिया"  # combining vowel signs stay inside the word


def test_normalize_fast_path_equals_the_plain_unicode_definition():
    # ASCII goes through bytes.translate, only non-ASCII runs through the Unicode table: same result as all-Unicode
    for text in [*TEXTS, "a\x1cb\x85c\u2028d\u200be§f", "ÀB—c…D"]:
        assert normalize(text) == " ".join(text.lower().translate(minhash._separators()).split()), text


def test_shingles_are_distinct_word_ngrams_of_the_normalized_text():
    assert shingles("A b, c d e F!", 3) == [b"a b c", b"b c d", b"c d e", b"d e f"]
    assert shingles("x y x y x y", 2) == [b"x y", b"y x"]
    assert shingles("Only three words", 5) == [b"only three words"]
    assert shingles("five words exactly right here", 5) == [b"five words exactly right here"]
    assert shingles("", 5) == [] and shingles(" ,; ", 5) == []
    assert shingles("café 東京", 1) == ["café".encode(), "東京".encode()]


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_grams", 0), ("bands", -1), ("rows", 2.5), ("rows", True), ("seed", -1), ("seed", 2**32), ("scheme", "affine64")],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"MinHashConfig\.{field} .*{value!r}"):
        MinHashConfig(**{field: value})


def test_config_key_is_stable_and_changes_with_every_field():
    base = MinHashConfig()
    assert base.num_perm == 112 and base.key() == MinHashConfig().key()
    assert base.as_dict() == {"n_grams": 5, "bands": 14, "rows": 8, "seed": 1, "scheme": "affine32"}
    changed = [dataclasses.replace(base, n_grams=4), dataclasses.replace(base, bands=20), dataclasses.replace(base, rows=5),
               dataclasses.replace(base, seed=2), dataclasses.replace(base, scheme="legacy")]
    keys = {base.key(), *(c.key() for c in changed)}
    assert len(keys) == 1 + len(changed)
    assert all(len(k) == 12 and int(k, 16) >= 0 for k in keys)


def test_band_hashes_are_deterministic_and_follow_band_content():
    config = MinHashConfig(bands=3, rows=4)
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(5, config.num_perm), dtype=np.uint64)
    sigs[1] = sigs[0]
    sigs[2] = sigs[0]
    sigs[2, 5] += 1  # band 1, one row
    sigs[3] = sigs[0]
    sigs[3, [8, 9]] = sigs[0, [9, 8]]  # band 2, two rows swapped
    h = band_hashes(sigs, config)
    assert h.dtype == np.uint64 and h.shape == (5, 3)
    np.testing.assert_array_equal(h, band_hashes(sigs.copy(), config))
    np.testing.assert_array_equal(h[1], h[0])
    assert (h[2] == h[0]).tolist() == [True, False, True]
    assert (h[3] == h[0]).tolist() == [True, True, False]
    # the same rows in another band hash differently, so one band's table never matches another's
    same_rows = np.tile(np.arange(4, dtype=np.uint64), 3)[None, :]
    assert len(set(band_hashes(same_rows, config)[0].tolist())) == 3
    # a fixed value: no per-process salt (Python's hash()) or platform dependence
    assert band_hashes(np.arange(12, dtype=np.uint64)[None, :], config)[0, 0] == np.uint64(14782414083169690392)


def test_band_hashes_do_not_collide_on_many_distinct_bands():
    config = MinHashConfig(bands=1, rows=8)
    rng = np.random.default_rng(1)
    sigs = rng.integers(0, 16, size=(200_000, 8), dtype=np.uint64)  # small values: many bands differ in one row
    distinct = len(np.unique(sigs, axis=0))
    assert len(np.unique(band_hashes(sigs, config))) == distinct


def test_band_hashes_reject_a_signature_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"\(n, 112\)"):
        band_hashes(np.zeros((2, 100), dtype=np.uint64), MinHashConfig())
