"""Where the tokenizer meets storage: training it on a sample of clean_documents, and writing token shards.

Layout (ARCHITECTURE.md's data contracts):

    tokenizer/all/all/{tokenizer.tiktoken, tokenizer_config.json, tokenizer.json, _manifest.json}
    token_shards/{crawl}/{shard}/part-{name}.bin        the tokens of one clean_documents part, little-endian
    token_shards/{crawl}/{shard}/part-{name}.parquet    its index: id, url, offset, token_count (one row a document)
    token_shards/{crawl}/{shard}/_manifest.json         dtype ("uint16"/"uint32"), eot id, the tokenizer's sha256

Each document is written as <|endoftext|> followed by its tokens, so every document starts right after the
separator (it doubles as a beginning-of-document token) and a reader can cut the stream anywhere. `offset` is where
the document's first token (after its separator) sits in the part's .bin, in tokens; `token_count` excludes the
separator. Parts keep the names of the clean_documents parts they come from, so shards are byte-identical on rerun.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import numpy as np
import polars as pl

from pipeline.documents import iter_clean
from pipeline.storage import Store
from pipeline.tokenizer import Tokenizer, reference_encoding

TOKENIZER = "tokenizer"
TOKENS = "token_shards"
ALL = "all"  # the one partition of a dataset-wide asset
TOKENIZER_FILES = ("tokenizer.tiktoken", "tokenizer_config.json", "tokenizer.json")
REFERENCES = {"GPT-2 (r50k_base)": "r50k_base", "GPT-4 (cl100k_base)": "cl100k_base"}
INDEX_SCHEMA = {"id": pl.String, "url": pl.String, "offset": pl.Int64, "token_count": pl.Int64}


def is_held_out(doc_id: str, every: int) -> bool:
    """One document in `every`, chosen by a hash of its id (stable across runs and machines), is held out."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little") % every == 0


def train_tokenizer(
    store: Store,
    crawls: dict[str, list[str]],
    vocab_size: int,
    max_train_bytes: int,
    holdout_every: int = 20,
    max_held_out: int = 1000,
) -> dict:
    """Trains on the first `max_train_bytes` of non-held-out clean text; measures compression on the held-out docs
    (up to `max_held_out` of them). Reading stops once both are full.

    Raises PartitionMissing naming the first clean_documents partition that is not there.
    """
    held_out: list[str] = []
    budget = {"bytes": 0, "docs": 0}

    def training_texts() -> Iterator[str]:
        for doc_id, text in iter_clean(store, crawls):
            if is_held_out(doc_id, holdout_every):
                if len(held_out) < max_held_out:
                    held_out.append(text)
            elif budget["bytes"] < max_train_bytes:
                budget["bytes"] += len(text.encode())
                budget["docs"] += 1
                yield text
            elif len(held_out) >= max_held_out:
                return

    start = time.perf_counter()
    tokenizer = Tokenizer.train(training_texts(), vocab_size)
    seconds = time.perf_counter() - start
    # With no clean text (crawls whose every document was dropped) the tokenizer is bytes and special tokens only:
    # a valid tokenizer that encodes anything, which the asset's has_training_text check flags.
    files = tokenizer.to_files()
    directory = store.partition_dir(TOKENIZER, ALL, ALL)
    for name in TOKENIZER_FILES:
        store.write_bytes(f"{directory}/{name}", files[name])
    sha = hashlib.sha256(files["tokenizer.tiktoken"]).hexdigest()
    stats = {
        "vocab_size": tokenizer.n_vocab,
        "training_bytes": budget["bytes"],
        "training_docs": budget["docs"],
        "seconds": round(seconds, 3),
        "held_out_docs": len(held_out),
        "held_out_bytes_per_token": round(tokenizer.compression(held_out), 4) if held_out else None,
    }
    info = {"sha256": sha, "crawls": crawls, "config": {"vocab_size": vocab_size, "max_train_bytes": max_train_bytes,
                                                       "holdout_every": holdout_every, "max_held_out": max_held_out}, "stats": stats}
    store.commit(TOKENIZER, ALL, ALL, [], info, files=list(TOKENIZER_FILES))
    return {**stats, "sha256": sha, "tokenizer": tokenizer, "held_out": held_out}


def load_tokenizer(store: Store) -> tuple[Tokenizer, str]:
    """The committed tokenizer and its sha256; PartitionMissing if none was trained."""
    sha = store.manifest(TOKENIZER, ALL, ALL)["sha256"]
    files = {name: store.read_file(TOKENIZER, ALL, ALL, name) for name in TOKENIZER_FILES}
    return Tokenizer.from_files(files), sha


def encode_part(tokenizer: Tokenizer, df: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """The part's documents as one token array (<|endoftext|> before each) and its index."""
    encoded = tokenizer.encode_batch(df["text"].to_list()) if df.height else []
    counts = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    offsets = np.cumsum(counts + 1) - counts  # each document starts after its separator
    tokens = np.empty(int((counts + 1).sum()), dtype=tokenizer.token_dtype)
    for doc, offset in zip(encoded, offsets):
        tokens[offset - 1] = tokenizer.eot_id
        tokens[offset : offset + len(doc)] = doc
    index = pl.DataFrame(
        {"id": df["id"], "url": df["url"], "offset": pl.Series(offsets, dtype=pl.Int64),
         "token_count": pl.Series(counts, dtype=pl.Int64)},
        schema=INDEX_SCHEMA,
    )
    return tokens, index


def write_token_shard(store: Store, crawl: str, shard: str, tokenizer: Tokenizer, tokenizer_sha: str) -> dict:
    """Encodes every part of the shard's clean_documents; commits .bin files, their indexes and the manifest."""
    directory = store.partition_dir(TOKENS, crawl, shard)
    parts, files = [], []
    stats = {"documents": 0, "tokens": 0, "bytes": 0, "empty_documents": 0}
    for part in store.parts("clean_documents", crawl, shard):
        df = store.read_part("clean_documents", crawl, shard, part)
        tokens, index = encode_part(tokenizer, df)
        store.write_bytes(f"{directory}/part-{part}.bin", tokens.astype(tokens.dtype.newbyteorder("<")).tobytes())
        store.write_part(TOKENS, crawl, shard, part, index)
        parts.append(part)
        files.append(f"part-{part}.bin")
        stats["documents"] += df.height
        stats["tokens"] += int(index["token_count"].sum() or 0)
        stats["bytes"] += int(df["text"].str.len_bytes().sum() or 0) if df.height else 0
        stats["empty_documents"] += int((index["token_count"] == 0).sum())
    info = {
        "inputs": clean_fingerprint(store, crawl, shard),
        "dtype": np.dtype(tokenizer.token_dtype).name,
        "byteorder": "little",
        "eot_id": tokenizer.eot_id,
        "tokenizer_sha256": tokenizer_sha,
        "stats": stats,
    }
    store.commit(TOKENS, crawl, shard, parts, info, files=files)
    return info


def clean_fingerprint(store: Store, crawl: str, shard: str) -> str:
    """A hash of the shard's committed clean_documents manifest: changes whenever that partition is rewritten."""
    manifest = store.manifest("clean_documents", crawl, shard)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_tokens(store: Store, crawl: str, shard: str, part: str) -> np.ndarray:
    """The tokens of one part of a committed token shard."""
    manifest = store.manifest(TOKENS, crawl, shard)
    data = store.read_file(TOKENS, crawl, shard, f"part-{part}.bin")
    return np.frombuffer(data, dtype=np.dtype(manifest["dtype"]).newbyteorder("<"))


def compression_table(tokenizer: Tokenizer, texts: list[str]) -> list[tuple[str, int, float | None]]:
    """(label, vocabulary, bytes per token) on `texts`: ours, then GPT-2's and GPT-4's (None when they do not load
    offline)."""
    total = sum(len(t.encode()) for t in texts)
    rows = [("ours", tokenizer.n_vocab, tokenizer.compression(texts))]
    for label, name in REFERENCES.items():
        enc = reference_encoding(name)
        tokens = sum(len(x) for x in enc.encode_ordinary_batch(texts)) if enc is not None else 0
        rows.append((label, enc.n_vocab if enc else 0, total / tokens if tokens else None))
    return rows


def decode_mismatches(store: Store, crawl: str, shard: str, tokenizer: Tokenizer) -> list[str]:
    """Reads back a committed token shard: the ids of the parts whose first document does not follow an
    <|endoftext|> or does not decode to its clean text."""
    bad = []
    for part in store.parts(TOKENS, crawl, shard):
        index = store.read_part(TOKENS, crawl, shard, part)
        if not index.height:
            continue
        tokens = read_tokens(store, crawl, shard, part)
        offset, count, doc_id = index["offset"][0], index["token_count"][0], index["id"][0]
        clean = store.read_part("clean_documents", crawl, shard, part)
        text = clean.filter(clean["id"] == doc_id)["text"][0]
        if tokens[offset - 1] != tokenizer.eot_id or tokenizer.decode(tokens[offset : offset + count].tolist()) != text:
            bad.append(doc_id)
    return bad
