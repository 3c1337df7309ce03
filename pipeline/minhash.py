"""MinHash signatures of word n-gram shingles, a batch of documents at a time, bit-identical to datasketch.

`MinHasher(config).signatures(texts)[i]` equals `datasketch.MinHash(num_perm, seed, scheme=config.scheme)` updated
with every shingle of `shingles(texts[i], n_grams)`: the same SHA-1 32-bit hash of each shingle and the same
permutations drawn from `np.random.RandomState(seed)`. Instead of one numpy call per shingle (datasketch's
`update`), a batch hashes all of its shingles in one loop, permutes them in one numpy pass over bounded chunks of
(shingles x permutations), and takes each document's minimum with `np.minimum.reduceat`.

The LSH side (`band_hashes`) reduces the `rows` values of each band to one 64-bit hash, so that clustering a crawl
joins on one integer column per band (FineWeb: 14 bands x 8 rows, 5-gram shingles).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass

import numpy as np

SCHEMES = ("affine32", "legacy")

# datasketch's constants: the 61-bit Mersenne prime of the legacy scheme, and the "empty" value of a signature
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH_32 = (1 << 32) - 1
# shingles permuted at once: bounds the (num_perm x shingles) temporaries to ~15 MB at 112 permutations (~30 MB legacy)
_CHUNK_ROWS = 1 << 15


@dataclass(frozen=True)
class MinHashConfig:
    """The shingles, the LSH banding and the permutations of a MinHash run (defaults: FineWeb's 5-grams, 14 x 8).

    `scheme` is datasketch's permutation scheme: "affine32" (datasketch >= 2.0's default: an odd `a * h + b` mod
    2^32 after a MurmurHash3 pre-mix, collision-free) or "legacy" (datasketch < 2.0: `(a * h + b) mod (2^61 - 1)`
    truncated to 32 bits, biased on large sets).
    """

    n_grams: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    scheme: str = "affine32"

    def __post_init__(self) -> None:
        for name in ("n_grams", "bands", "rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MinHashConfig.{name} must be a positive int, got {value!r}")
        # np.random.RandomState takes seeds in [0, 2^32)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 1 << 32:
            raise ValueError(f"MinHashConfig.seed must be an int in [0, 2**32), got {self.seed!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"MinHashConfig.scheme must be one of {SCHEMES}, got {self.scheme!r}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A short hash of every field: signatures stored under it are never read by a run with another config."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


@functools.cache
def _separators() -> dict[int, str]:
    """Every Unicode punctuation (P*), symbol (S*), control/format (Cc, Cf) and whitespace character -> a space.

    Wider than datatrove's fixed PUNCTUATION list: a symbol in any script separates words the same way.
    """
    return {
        cp: " "
        for cp in range(sys.maxunicode + 1)
        if (cat := unicodedata.category(ch := chr(cp)))[0] in "PS" or cat in ("Cc", "Cf") or ch.isspace()
    }


@functools.cache
def _ascii_separators() -> bytes:
    """A bytes.translate table: the ASCII separators -> space, every other byte (UTF-8 of non-ASCII) unchanged."""
    return bytes(32 if i < 128 and i in _separators() else i for i in range(256))


_NON_ASCII_RUN = re.compile(rb"[\x80-\xff]+")


def _separate_non_ascii(match: re.Match) -> bytes:
    return match.group().decode("utf-8", "surrogatepass").translate(_separators()).encode("utf-8", "surrogatepass")


def _normalized_utf8(text: str) -> bytes:
    """`normalize(text)` as UTF-8. Text is mostly ASCII: bytes.translate handles it at ~1 ns a byte, and only
    the runs of non-ASCII characters go through the (40x slower) str.translate with the Unicode table."""
    raw = text.lower().encode("utf-8", "surrogatepass").translate(_ascii_separators())
    if not raw.isascii():
        raw = _NON_ASCII_RUN.sub(_separate_non_ascii, raw)
    return b" ".join(raw.split())


def normalize(text: str) -> str:
    """Lower case, punctuation and symbols replaced by spaces, whitespace collapsed to single spaces.

    The part of datatrove's `simplify_text` that matters for near-duplicates; digits and diacritics are kept
    (datatrove maps numbers to 0 and strips accents), so "version 2" and "version 3" stay different shingles.
    """
    return _normalized_utf8(text).decode("utf-8", "surrogatepass")


def shingles(text: str, n: int) -> list[bytes]:
    """The distinct word n-grams of the normalized text, UTF-8, words joined by one space, in first-seen order.

    A text of fewer than n words is one shingle of all its words; an empty text has none.
    """
    if n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    norm = _normalized_utf8(text)
    if not norm:
        return []
    spaces = np.flatnonzero(np.frombuffer(norm, dtype=np.uint8) == 32)  # UTF-8 never has 0x20 inside a character
    if len(spaces) < n:
        return [norm]
    # shingle i runs from the start of word i to the end of word i + n - 1: slices of one buffer, no joins
    starts = [0, *(spaces[: len(spaces) - n + 1] + 1).tolist()]
    ends = [*spaces[n - 1 :].tolist(), len(norm)]
    return list(dict.fromkeys([norm[i:j] for i, j in zip(starts, ends)]))


def sha1_hash32(items: list[bytes]) -> np.ndarray:
    """datasketch's `sha1_hash32` of every item: the first 4 bytes of its SHA-1, little-endian, as uint32."""
    sha1 = hashlib.sha1
    digests = b"".join([sha1(s).digest() for s in items])
    return np.frombuffer(digests, dtype="<u4").reshape(-1, 5)[:, 0].astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the affine32 permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def permutations(config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the num_perm permutations, drawn exactly as datasketch's `MinHash._init_permutations`."""
    gen = np.random.RandomState(config.seed)
    if config.scheme == "legacy":
        ab = np.array(
            [
                (gen.randint(1, _MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, _MERSENNE_PRIME, dtype=np.uint64))
                for _ in range(config.num_perm)
            ],
            dtype=np.uint64,
        )
        return ab[:, 0].copy(), ab[:, 1].copy()
    a = gen.randint(0, 1 << 31, config.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, config.num_perm, dtype=np.uint32)
    return a, b


class MinHasher:
    """Signs batches of documents; holds the config's permutations."""

    def __init__(self, config: MinHashConfig) -> None:
        self.config = config
        self.a, self.b = permutations(config)

    def _permute(self, hv: np.ndarray) -> np.ndarray:
        """(num_perm, len(hv)) permuted values of 32-bit shingle hashes, with datasketch's arithmetic.

        Shingles along axis 1, so each document's are contiguous for reduceat (9x faster than reducing axis 0).
        """
        a, b = self.a[:, None], self.b[:, None]
        if self.config.scheme == "legacy":
            phv = a * hv.astype(np.uint64)  # wraps mod 2^64 before the % prime, as datasketch's does
            phv += b
            phv %= _MERSENNE_PRIME
            phv &= np.uint64(_MAX_HASH_32)
            return phv
        phv = a * _fmix32(hv)  # uint32: the wraparound is the mod 2^32
        phv += b
        return phv

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint64 signatures; a text with no shingles keeps the empty value 2^32 - 1."""
        per_doc = [shingles(t, self.config.n_grams) for t in texts]
        counts = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
        hv = sha1_hash32([s for doc in per_doc for s in doc])
        out = np.full((self.config.num_perm, len(texts)), _MAX_HASH_32, dtype=np.uint64)
        doc_of_row = np.repeat(np.arange(len(texts)), counts)
        for lo in range(0, len(hv), _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, len(hv))
            docs = doc_of_row[lo:hi]
            starts = np.concatenate(([0], np.flatnonzero(docs[1:] != docs[:-1]) + 1))
            mins = np.minimum.reduceat(self._permute(hv[lo:hi]), starts, axis=1)
            cols = docs[starts]
            # a document split over two chunks takes the minimum of both parts
            out[:, cols] = np.minimum(out[:, cols], mins)
        return np.ascontiguousarray(out.T)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: a bijection on uint64 whose output bits each depend on every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def band_hashes(sigs: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """(n, bands) uint64: one hash of the `rows` values of each band, the same on every process and platform.

    h = fmix64(h ^ value) over the rows of a band, from a start that depends on the band. For a fixed prefix each
    step is a bijection of the next value, so bands that differ in their last row never collide and other
    differing bands collide with probability ~2^-64.
    """
    sigs = np.asarray(sigs, dtype=np.uint64)
    if sigs.ndim != 2 or sigs.shape[1] != config.num_perm:
        raise ValueError(f"signatures must have shape (n, {config.num_perm}), got {sigs.shape}")
    values = sigs.reshape(len(sigs), config.bands, config.rows)
    golden = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment
    h = np.broadcast_to(_fmix64(np.arange(1, config.bands + 1, dtype=np.uint64) * golden), values.shape[:2])
    for r in range(config.rows):
        h = _fmix64(h ^ values[:, :, r])
    return np.ascontiguousarray(h)
