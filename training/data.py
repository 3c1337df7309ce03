"""Batches of next-token windows from the committed token shards, split into train and validation, resumable.

The stream: every committed part of token_shards/{crawl}/{shard}/, in sorted (crawl, shard, part) order, read as one
sequence of tokens (each document already starts with <|endoftext|>, so windows may cross documents and parts). It
is cut into contiguous, non-overlapping windows of seq_len + 1 tokens (inputs and their next tokens). The windows
of an epoch are then shuffled within blocks of about SHUFFLE_TOKENS consecutive tokens (a small dataset is one
block), in a new order each epoch, drawn from (seed, epoch, block) so every rank and every rerun agrees. Pages of a
crawl come in site order (a WARC file holds one site's chapters, then another language's), so unshuffled batches
would follow one topic after another and the loss would jump with them; blocks keep memory bounded by the parts of
one block however large the crawl.

Global batch i is rows [i * R, (i + 1) * R) of that order, with R = batch_size x world_size, and rank r takes rows
[r * batch_size, (r + 1) * batch_size) of it. So 2 ranks x batch b see exactly the rows of 1 rank x batch 2b, and
a resumed run continues with the next batch. The tail that fills no whole batch is skipped; then the next epoch.

With repeat_frac > 0 (training only), that share of rows, chosen by (seed, epoch, window), shows a stretch of
itself again further on (`quote`): the text seen twice, as a page that quotes itself. Copying then pays on real
text from the first steps, so a small model forms the induction heads that copying from a prompt needs (a tool call
copying the question's digits) within a CPU budget; evals.in_context_gain, on random tokens never trained on,
checks that the copying is general.

Validation holds out whole parts, chosen by position so the choice is stable and needs no reading: in the sorted
list of non-empty parts, every 10th one (positions 9, 19, 29, ...) is validation; with fewer than 10 parts, the last
part is. A dataset of one part (the bundled sample can be that small) keeps its first 90% of tokens for training
and its last 10% for validation. Adding a crawl or shard can move parts between the splits; compare validation
losses only between runs over the same shards.
"""

from __future__ import annotations

import bisect
import math
import posixpath
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.storage import PartitionMissing, Store
from pipeline.token_io import TOKENS, read_tokens
from pipeline.tokenizer import Tokenizer

VAL_EVERY = 10  # one part in ten is held out
SINGLE_PART_TRAIN_FRACTION = 0.9
SHUFFLE_TOKENS = 1 << 24  # 16M tokens (32 MB of uint16) a shuffle block: thousands of web pages


@dataclass(frozen=True)
class Segment:
    """Tokens [start, stop) of one committed part."""

    crawl: str
    shard: str
    part: str
    start: int
    stop: int

    @property
    def n_tokens(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class TokenParts:
    """What the committed token shards hold: every non-empty part as a whole segment, and the tokenizer they used."""

    segments: list[Segment]
    tokenizer_sha256: str
    eot_id: int


def list_token_parts(store: Store, crawls: list[str] | None = None) -> TokenParts:
    """Every non-empty part of every committed token shard of `crawls` (all crawls when None), sorted.

    FileNotFoundError naming the folder when there is none; ValueError when shards disagree on the tokenizer.
    """
    root = store.path(TOKENS)
    if crawls is None:
        crawls = sorted(posixpath.basename(p.rstrip("/")) for p in _ls_dirs(store, root))
    segments, shas, eots = [], {}, set()
    for crawl in sorted(crawls):
        for shard_dir in sorted(_ls_dirs(store, posixpath.join(root, crawl))):
            shard = posixpath.basename(shard_dir.rstrip("/"))
            try:
                manifest = store.manifest(TOKENS, crawl, shard)
            except PartitionMissing:  # a shard whose run was killed, or is still writing
                continue
            shas.setdefault(manifest["tokenizer_sha256"], f"{crawl}/{shard}")
            eots.add(manifest["eot_id"])
            itemsize = np.dtype(manifest["dtype"]).itemsize
            sizes = {posixpath.basename(f["name"]): f["size"] for f in store.fs.ls(shard_dir, detail=True)}
            for part in sorted(manifest["parts"]):
                n_tokens = sizes.get(f"part-{part}.bin", 0) // itemsize
                if n_tokens:
                    segments.append(Segment(crawl, shard, part, 0, n_tokens))
    where = store.uri(TOKENS) + (f" for crawls {sorted(crawls)}" if crawls else "")
    if not segments:
        raise FileNotFoundError(f"no committed token shards with tokens under {where}: materialize token_shards first")
    if len(shas) > 1:
        raise ValueError(f"token shards under {where} were written by different tokenizers: "
                         + ", ".join(f"{sha[:12]} (e.g. {example})" for sha, example in shas.items()))
    return TokenParts(segments, next(iter(shas)), eots.pop())


def split_segments(segments: list[Segment], split: str) -> list[Segment]:
    """The train or val segments of the sorted part list (the rule is in the module docstring)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if len(segments) == 1:
        only = segments[0]
        cut = only.start + int(only.n_tokens * SINGLE_PART_TRAIN_FRACTION)
        start, stop = (only.start, cut) if split == "train" else (cut, only.stop)
        return [Segment(only.crawl, only.shard, only.part, start, stop)]
    val = {i for i in range(len(segments)) if i % VAL_EVERY == VAL_EVERY - 1} or {len(segments) - 1}
    return [s for i, s in enumerate(segments) if (i in val) == (split == "val")]


class TokenStream:
    """(x, y) int64 batches of shape (batch_size, seq_len) for one rank; see the module docstring for the order."""

    def __init__(
        self,
        store: Store,
        crawls: list[str] | None,
        split: str,
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_tokens: int = SHUFFLE_TOKENS,
        repeat_frac: float = 0.0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
        self.store, self.split = store, split
        self.seq_len, self.batch_size, self.rank, self.world_size = seq_len, batch_size, rank, world_size
        parts = list_token_parts(store, crawls)
        self.tokenizer_sha256, self.eot_id = parts.tokenizer_sha256, parts.eot_id
        self.segments = split_segments(parts.segments, split)
        self.starts = np.cumsum([0] + [s.n_tokens for s in self.segments]).tolist()  # stream offset of each segment
        self.n_tokens = self.starts[-1]
        self.rows = batch_size * world_size  # rows of one global batch
        self.batches_per_epoch = self.n_tokens // (seq_len + 1) // self.rows
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the {split} split has {self.n_tokens} tokens, fewer than one global batch of {self.rows} x "
                f"{seq_len + 1}: lower --batch-size or --seq-len, or add data"
            )
        if not 0.0 <= repeat_frac <= 1.0:
            raise ValueError(f"repeat_frac must be in [0, 1], got {repeat_frac}")
        self.seed, self.repeat_frac = seed, repeat_frac
        self.windows_per_epoch = self.batches_per_epoch * self.rows
        # a whole number of global batches a block, so that one batch never needs two blocks' parts
        self.block_windows = max(1, shuffle_tokens // ((seq_len + 1) * self.rows)) * self.rows
        self.batch, self.epoch = 0, 0  # the next global batch to hand out
        self._cache: dict[int, np.ndarray] = {}
        self._order: tuple[tuple[int, int], np.ndarray] | None = None  # ((epoch, block), its permutation)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch >= self.batches_per_epoch:
            self.batch, self.epoch = 0, self.epoch + 1
        x, y = self.get(self.batch, self.epoch)
        self.batch += 1
        return x, y

    def get(self, batch: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of global batch `batch` of epoch `epoch`, without moving the stream."""
        window = self.seq_len + 1
        first = (batch % self.batches_per_epoch) * self.rows + self.rank * self.batch_size
        block, offset = divmod(first, self.block_windows)
        base = block * self.block_windows
        windows = base + self._block_order(epoch, block)[offset : offset + self.batch_size]
        rows = np.stack([self._read(w * window, (w + 1) * window) for w in windows.tolist()])
        if self.repeat_frac:
            for i, w in enumerate(windows.tolist()):
                if self._repeats(epoch, w):
                    rows[i] = quote(rows[i], np.random.default_rng([self.seed, epoch, w, 2]))
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]

    def _repeats(self, epoch: int, window: int) -> bool:
        return np.random.default_rng([self.seed, epoch, window, 1]).random() < self.repeat_frac

    def _block_order(self, epoch: int, block: int) -> np.ndarray:
        """The permutation of one block's windows; entering a block drops the cached parts outside it."""
        if self._order is None or self._order[0] != (epoch, block):
            first = block * self.block_windows
            n = min(self.block_windows, self.windows_per_epoch - first)
            self._order = ((epoch, block), np.random.default_rng([self.seed, epoch, block]).permutation(n))
            lo, hi = first * (self.seq_len + 1), (first + n) * (self.seq_len + 1)
            self._cache = {i: t for i, t in self._cache.items() if self.starts[i] < hi and self.starts[i + 1] > lo}
        return self._order[1]

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start, dtype=np.int64)
        i = bisect.bisect_right(self.starts, start) - 1
        at = start
        while at < stop:
            if i not in self._cache:
                self._cache[i] = self._load(i)
            take = min(stop, self.starts[i + 1]) - at
            offset = at - self.starts[i]
            out[at - start : at - start + take] = self._cache[i][offset : offset + take]
            at += take
            i += 1
        return out

    def _load(self, i: int) -> np.ndarray:
        s = self.segments[i]
        return read_tokens(self.store, s.crawl, s.shard, s.part)[s.start : s.stop]

    def iter_tokens(self, max_tokens: int | None = None):
        """The split's tokens, segment by segment (up to `max_tokens`), for statistics such as unigram counts."""
        left = self.n_tokens if max_tokens is None else max_tokens
        for i in range(len(self.segments)):
            if left <= 0:
                return
            tokens = self._load(i)[:left]
            left -= len(tokens)
            yield tokens

    def state_dict(self) -> dict:
        return {"batch": self.batch, "epoch": self.epoch, "rows": self.rows, "seq_len": self.seq_len,
                "seed": self.seed, "n_tokens": self.n_tokens}

    def load_state_dict(self, state: dict) -> None:
        """Continues where `state` left off. Saved with another global batch (rows x seq_len), the position is
        carried over in tokens, rounded up to the next whole batch of this stream."""
        batch = state["batch"]
        if (state["rows"], state["seq_len"]) != (self.rows, self.seq_len):
            tokens = batch * state["rows"] * (state["seq_len"] + 1)
            batch = math.ceil(tokens / (self.rows * (self.seq_len + 1)))
        self.batch, self.epoch = batch, state["epoch"]


def bytes_per_token(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes of each token id (0 for special tokens): the denominator of bits per byte."""
    special = set(tokenizer.special_tokens.values())
    return np.array([0 if i in special else len(tokenizer.token_bytes(i)) for i in range(tokenizer.n_vocab)],
                    dtype=np.int64)


def _ls_dirs(store: Store, path: str) -> list[str]:
    if not store.fs.exists(path):
        return []
    return [e["name"] for e in store.fs.ls(path, detail=True) if e["type"] == "directory"]


def quote(row: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of `row` with a stretch of it shown again later, at a random length (8 tokens to half the row) and a
    random distance: copying at one fixed distance would be learned as "look back N tokens", which copies nothing
    else (a model trained on halves shown twice learned exactly that, BENCHMARKS.md)."""
    n = len(row)
    length = int(rng.integers(min(8, n // 2), n // 2 + 1))
    first = int(rng.integers(0, n - 2 * length + 1))
    second = int(rng.integers(first + length, n - length + 1))
    row = row.copy()
    row[second:second + length] = row[first:first + length]
    return row
