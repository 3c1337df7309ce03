"""The index behind the chat model's `search` tool: BM25 over ~100-word passages of the clean corpus.

Passages, not documents, are what a search returns, so a result is short enough to paste into the model's context.
Scoring a query reads only the postings of its terms (an inverted index in CSR form: one array of passage rows and
one of term frequencies, sliced per term), so a query costs what its terms occur, not the size of the corpus.

Layout (one dataset-wide partition, written through `Store` like every other asset):

    search_index/all/all/part-passages.parquet   doc_id, url, passage (its order in the doc), text, length (tokens)
    search_index/all/all/part-terms.parquet      term, df (passages holding it); row i is term id i, sorted by term
    search_index/all/all/part-postings.parquet   row (into passages), tf; grouped by term id, rows ascending
    search_index/all/all/_manifest.json          parts, fingerprint, params, stats (written last)

Passages are stored sorted by (doc_id, passage), so a passage's row is its tie-break rank and the index is the same
whatever order the documents arrive in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.storage import Store

SEARCH_INDEX = "search_index"
ALL = "all"  # the one partition of a dataset-wide asset
FORMAT = 1  # bump when tokenization, splitting or the layout changes: it is part of the fingerprint
PARTS = ("passages", "terms", "postings")
NO_RESULTS = "no results"
WORD = r"\w+"  # lowercase \w+ runs, no stemmer: the same rule for passages and queries (see `_terms`)


class StaleIndex(ValueError):
    """A stored index was built from other documents or other parameters than the caller expects."""


@dataclass(frozen=True, slots=True)
class Hit:
    doc_id: str
    url: str
    score: float
    text: str  # the passage, not the whole document


def _terms(text: pl.Expr) -> pl.Expr:
    """Both sides go through this one polars expression, so a query's words always match the index's."""
    return text.str.to_lowercase().str.extract_all(WORD)


def split_passages(text: str, passage_words: int = 100) -> list[str]:
    """Cuts a document into passages of about `passage_words` words, on line boundaries where it can.

    Lines are packed whole while they fit; a line longer than `passage_words` is cut into even chunks first. A
    passage under a quarter full takes the next piece anyway, so a heading stays with the paragraph under it:
    passages hold at most 1.25 * `passage_words` words. Every word of `text` lands in exactly one passage, in order.
    """
    if passage_words < 1:
        raise ValueError(f"passage_words must be >= 1, got {passage_words!r}")
    pieces: list[list[str]] = []
    for line in text.splitlines():
        words = line.split()
        if words:
            chunks = -(-len(words) // passage_words)
            size = -(-len(words) // chunks)  # even chunks: no one-word tail
            pieces += [words[i : i + size] for i in range(0, len(words), size)]
    passages, current, count = [], [], 0
    for words in pieces:
        if current and count + len(words) > passage_words and count >= passage_words // 4:
            passages.append("\n".join(current))
            current, count = [], 0
        current.append(" ".join(words))
        count += len(words)
    if current:
        passages.append("\n".join(current))
    return passages


def fingerprint(doc_ids: Iterable[str], *, passage_words: int, k1: float, b: float) -> str:
    """sha256 of the sorted document ids and the parameters: what a caller compares to a stored index's manifest
    to tell whether it is stale. Reading ids is enough to compute it; edits that keep a document's id do not
    change it."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "passage_words": passage_words, "k1": k1, "b": b},
                                       sort_keys=True).encode())
    for doc_id in sorted(doc_ids):
        digest.update(doc_id.encode() + b"\n")
    return digest.hexdigest()


class SearchIndex:
    """Okapi BM25 over passages. Build with `build`, or read a saved one with `load`."""

    def __init__(self, passages: pl.DataFrame, terms: pl.DataFrame, postings: pl.DataFrame, params: dict, fp: str):
        self.passages, self.terms, self.postings = passages, terms, postings
        self.params, self.fingerprint = params, fp
        self.k1, self.b = float(params["k1"]), float(params["b"])
        self._vocab = {term: i for i, term in enumerate(terms["term"].to_list())}
        df = terms["df"].to_numpy().astype(np.float64)
        self._offsets = np.concatenate([[0], np.cumsum(df, dtype=np.int64)])
        self._rows = postings["row"].to_numpy()
        self._tf = postings["tf"].to_numpy().astype(np.float64)
        n = passages.height
        # Lucene's idf, log(1 + (N - df + 0.5) / (df + 0.5)): Robertson's original goes negative for a term in over
        # half the passages, which would rank a passage that matches such a word below one that does not.
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5))
        lengths = passages["length"].to_numpy().astype(np.float64)
        avg = lengths.mean() if n else 1.0
        self._norm = self.k1 * (1.0 - self.b + self.b * lengths / avg)  # the per-passage part of BM25's denominator

    def __len__(self) -> int:
        return self.passages.height

    @classmethod
    def build(
        cls,
        documents: pl.DataFrame | Iterable[tuple[str, str, str]],
        *,
        passage_words: int = 100,
        k1: float = 1.2,  # k1 = 1.2, b = 0.75: the usual Okapi BM25 defaults (Robertson et al.; Lucene, Elasticsearch)
        b: float = 0.75,
    ) -> SearchIndex:
        """Indexes (doc_id, url, text) triples, or a frame with id, url and text columns (clean_documents)."""
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        if isinstance(documents, pl.DataFrame):
            missing = {"id", "url", "text"} - set(documents.columns)
            if missing:
                raise ValueError(f"documents frame lacks columns {sorted(missing)}; it has {documents.columns}")
            documents = documents.select("id", "url", "text").iter_rows()
        docs = sorted(documents, key=lambda d: d[0])
        for (doc_id, *_), (next_id, *_) in zip(docs, docs[1:]):
            if doc_id == next_id:
                raise ValueError(f"document id {doc_id!r} occurs more than once")
        columns: dict[str, list] = {"doc_id": [], "url": [], "passage": [], "text": []}
        for doc_id, url, text in docs:
            for i, passage in enumerate(split_passages(text or "", passage_words)):
                for key, value in zip(columns, (doc_id, url, i, passage)):
                    columns[key].append(value)
        schema = {"doc_id": pl.String, "url": pl.String, "passage": pl.Int32, "text": pl.String}
        passages = (
            pl.DataFrame(columns, schema=schema)
            .with_columns(length=_terms(pl.col("text")).list.len().cast(pl.Int32))
            .filter(pl.col("length") > 0)  # "----" lines: nothing a query can match, and they would skew avgdl
        )
        tokens = (
            passages.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("row"), _terms(pl.col("text")).alias("term"))
            .explode("term")
            .drop_nulls("term")
        )
        postings = tokens.group_by("term", "row").agg(tf=pl.len().cast(pl.Int32)).sort("term", "row")
        terms = postings.group_by("term", maintain_order=True).agg(df=pl.len().cast(pl.Int32))
        params = {"passage_words": passage_words, "k1": k1, "b": b}
        fp = fingerprint((d[0] for d in docs), **params)
        return cls(passages, terms, postings.select("row", "tf"), params, fp)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The `k` best passages for `query`, best first; ties by doc_id, then passage order. [] when no term of
        the query is in the index. A term repeated in the query counts once."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        words = pl.select(_terms(pl.lit(query, dtype=pl.String))).to_series().to_list()[0] or []
        ids = [self._vocab[w] for w in dict.fromkeys(words) if w in self._vocab]
        if not ids:
            return []
        rows, weights = [], []
        for t in ids:
            start, end = self._offsets[t], self._offsets[t + 1]
            r, tf = self._rows[start:end], self._tf[start:end]
            rows.append(r)
            weights.append(self._idf[t] * tf * (self.k1 + 1.0) / (tf + self._norm[r]))
        if len(rows) == 1:
            candidates, scores = rows[0], weights[0]
        else:
            candidates, inverse = np.unique(np.concatenate(rows), return_inverse=True)
            scores = np.bincount(inverse, weights=np.concatenate(weights), minlength=len(candidates))
        if len(scores) > k:  # keep the k best and everything tied with the k-th, then sort only those
            keep = scores >= np.partition(scores, len(scores) - k)[len(scores) - k]
            candidates, scores = candidates[keep], scores[keep]
        order = np.lexsort((candidates, -scores))[:k]
        picked = self.passages[candidates[order].tolist()]
        rows = zip(picked["doc_id"], picked["url"], scores[order].tolist(), picked["text"])
        return [Hit(*row) for row in rows]

    # persistence ----------------------------------------------------------------------------------------------
    def save(self, store: Store, name: str = SEARCH_INDEX) -> dict:
        """Writes the three parts, then the manifest (fingerprint, params, stats): a killed save leaves the last
        committed index readable and nothing half-written trusted. Returns the manifest's info."""
        for part, df in zip(PARTS, (self.passages, self.terms, self.postings)):
            store.write_part(name, ALL, ALL, part, df)
        stats = {
            "documents": self.passages["doc_id"].n_unique(),
            "passages": self.passages.height,
            "terms": self.terms.height,
            "postings": self.postings.height,
            "avg_passage_tokens": round(float(self.passages["length"].mean() or 0.0), 2),
        }
        info = {"format": FORMAT, "fingerprint": self.fingerprint, "params": self.params, "stats": stats}
        store.commit(name, ALL, ALL, list(PARTS), info)
        return info

    @classmethod
    def load(cls, store: Store, name: str = SEARCH_INDEX, expected_fingerprint: str | None = None) -> SearchIndex:
        """The committed index (PartitionMissing if none). With `expected_fingerprint` (see `fingerprint`), raises
        StaleIndex rather than serve results from other documents or parameters."""
        manifest = store.manifest(name, ALL, ALL)
        if manifest.get("format") != FORMAT:
            raise StaleIndex(f"{store.uri(name)} has format {manifest.get('format')!r}; this code reads {FORMAT}")
        if expected_fingerprint is not None and manifest["fingerprint"] != expected_fingerprint:
            raise StaleIndex(
                f"{store.uri(name)} was built with fingerprint {manifest['fingerprint']}, "
                f"expected {expected_fingerprint}: rebuild it"
            )
        passages, terms, postings = (store.read_part(name, ALL, ALL, part) for part in PARTS)
        return cls(passages, terms, postings, manifest["params"], manifest["fingerprint"])


def _clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at a space where one is near, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def format_results(hits: list[Hit], max_chars: int = 600) -> str:
    """What the model sees after its search call: "[n] url\\npassage" blocks, blank-line separated, in at most
    `max_chars` characters. The budget is shared: each block gets an equal part of what earlier ones left, so a
    long first passage cannot crowd out the rest; hits that would get under 40 characters each are left out."""
    if max_chars < len(NO_RESULTS):
        raise ValueError(f"max_chars must be >= {len(NO_RESULTS)}, got {max_chars!r}")
    if not hits:
        return NO_RESULTS
    hits = hits[: max(1, (max_chars + 2) // (40 + 2))]
    budget = max_chars - 2 * (len(hits) - 1)  # the "\n\n" separators
    blocks = []
    for i, hit in enumerate(hits):
        block = _clip(f"[{i + 1}] {hit.url}\n{hit.text}", budget // (len(hits) - i))
        blocks.append(block)
        budget -= len(block)
    return "\n\n".join(blocks)
