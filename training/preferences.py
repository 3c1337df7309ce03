"""People's preferences between answers, the data a reward model learns from (the seeds' RLHF): rankings, the
pairs they imply, agreement between labelers, a durable store, and an importer for pairwise files.

A ranking is one person's order of k answers to one prompt, best first. Every ranking of k answers implies
k(k-1)/2 pairs (each answer preferred to every one below it), which is what a Bradley-Terry reward model trains on.
Two labelers who ranked the same answers to the same prompt agree by Kendall's tau: 1 for the same order, -1 for
the reverse.

RankingStore keeps rankings in SQLite in WAL mode, each committed (synchronous=FULL) before add() returns, so a
page that says "saved" after add() has it on disk even if the server is killed the next moment; PostgresRankingStore
the same in a Postgres table, when the labelers are on several machines (`open_rankings` picks by the location).

read_pairwise imports the files public preference sets ship, JSON Lines or parquet, local or any fsspec URI:
- HH-RLHF's: {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}, the whole dialogue in each; the
  prompt is what they share up to the last "\\n\\nAssistant:", the answers what follows it;
- UltraFeedback's (binarized): {"prompt": "...", "chosen": [messages], "rejected": [messages]}, each list ending
  with the assistant's answer; or plain strings for both answers.
Each record becomes a ranking of two answers; a bad record is skipped and counted by reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import fsspec

HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


@dataclass(frozen=True, slots=True)
class Ranking:
    prompt: str
    responses: tuple[str, ...]  # best first
    labeler: str
    ranked_at: str  # ISO 8601, UTC
    source: str = "label"  # "label" (the labeling page) or the imported file's URI

    def __post_init__(self):
        if not self.prompt.strip():
            raise ValueError("a ranking needs a prompt")
        if len(self.responses) < 2:
            raise ValueError(f"a ranking orders at least 2 responses, got {len(self.responses)}")
        if len(set(self.responses)) != len(self.responses):
            raise ValueError("a ranking's responses must differ from one another")
        if not self.labeler.strip():
            raise ValueError("a ranking needs a labeler's name")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pairs(ranking: Ranking) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) for every pair the ranking implies: k(k-1)/2 of them."""
    return [(ranking.prompt, better, worse) for better, worse in combinations(ranking.responses, 2)]


def kendall_tau(order_a: tuple[str, ...], order_b: tuple[str, ...]) -> float:
    """Kendall's tau between two orders of the same items: (concordant - discordant) / pairs."""
    if set(order_a) != set(order_b) or len(order_a) < 2:
        raise ValueError("Kendall's tau compares two orders of the same two or more items")
    place = {item: i for i, item in enumerate(order_b)}
    signs = [1 if place[x] < place[y] else -1 for x, y in combinations(order_a, 2)]
    return sum(signs) / len(signs)


def agreement(rankings: list[Ranking]) -> dict:
    """Agreement between labelers where two or more ranked the same answers to the same prompt: the mean Kendall's
    tau over every pair of their rankings, and how many prompts and labeler pairs it rests on (tau None when none)."""
    shared: dict[tuple, dict[str, tuple[str, ...]]] = {}
    for r in rankings:
        shared.setdefault((r.prompt, frozenset(r.responses)), {})[r.labeler] = r.responses  # a labeler's latest
    taus = [kendall_tau(a, b) for by_labeler in shared.values() for a, b in combinations(by_labeler.values(), 2)]
    prompts = sum(len(by_labeler) > 1 for by_labeler in shared.values())
    return {"kendall_tau": sum(taus) / len(taus) if taus else None, "shared_prompts": prompts,
            "labeler_pairs": len(taus)}


class RankingStore:
    """Rankings in an SQLite file in WAL mode; add() returns once the ranking is on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rankings (id INTEGER PRIMARY KEY, prompt TEXT NOT NULL, "
                        "responses TEXT NOT NULL, labeler TEXT NOT NULL, ranked_at TEXT NOT NULL, "
                        "source TEXT NOT NULL)")

    def add(self, ranking: Ranking) -> int:
        """Stores the ranking and returns its id, after the commit."""
        with self.db:
            cursor = self.db.execute("INSERT INTO rankings (prompt, responses, labeler, ranked_at, source) VALUES "
                                     "(?, ?, ?, ?, ?)", (ranking.prompt, json.dumps(list(ranking.responses)),
                                                         ranking.labeler, ranking.ranked_at, ranking.source))
        return cursor.lastrowid

    def rankings(self) -> list[Ranking]:
        rows = self.db.execute("SELECT prompt, responses, labeler, ranked_at, source FROM rankings ORDER BY id")
        return [Ranking(p, tuple(json.loads(r)), labeler, at, source) for p, r, labeler, at, source in rows]

    def close(self) -> None:
        self.db.close()


class PostgresRankingStore:
    """Rankings in a PostgreSQL table, for labelers on several machines; add() returns after the commit (durable
    with Postgres' default synchronous_commit). `url`: postgresql://user:password@host:port/db, from the
    environment (its password is never printed: see `describe`)."""

    def __init__(self, url: str):
        import psycopg2

        self.url = url
        self.db = psycopg2.connect(url)
        self.lock = threading.Lock()  # one connection, shared by the page's threads
        with self.lock, self.db, self.db.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS rankings (id SERIAL PRIMARY KEY, prompt TEXT NOT NULL, "
                           "responses TEXT NOT NULL, labeler TEXT NOT NULL, ranked_at TEXT NOT NULL, "
                           "source TEXT NOT NULL)")

    def add(self, ranking: Ranking) -> int:
        with self.lock, self.db, self.db.cursor() as cursor:  # `with db`: commit on success, roll back on error
            cursor.execute("INSERT INTO rankings (prompt, responses, labeler, ranked_at, source) VALUES "
                           "(%s, %s, %s, %s, %s) RETURNING id", (ranking.prompt, json.dumps(list(ranking.responses)),
                                                                  ranking.labeler, ranking.ranked_at, ranking.source))
            return cursor.fetchone()[0]

    def rankings(self) -> list[Ranking]:
        with self.lock, self.db, self.db.cursor() as cursor:
            cursor.execute("SELECT prompt, responses, labeler, ranked_at, source FROM rankings ORDER BY id")
            return [Ranking(p, tuple(json.loads(r)), labeler, at, source) for p, r, labeler, at, source in cursor]

    def close(self) -> None:
        self.db.close()


def open_rankings(where: str | Path) -> RankingStore | PostgresRankingStore:
    """A postgresql:// URL's store, or the SQLite file at a path."""
    where = str(where)
    return PostgresRankingStore(where) if where.startswith(POSTGRES) else RankingStore(where)


def describe(where: str | Path) -> str:
    """Where rankings are kept, fit to print: a URL without its password."""
    where = str(where)
    if not where.startswith(POSTGRES):
        return where
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


POSTGRES = ("postgresql://", "postgres://")
PREFERENCE_RANKINGS = "preference_rankings"
ALL = "all"  # a dataset-wide asset's one partition
RANKINGS_SCHEMA = {"prompt": "String", "responses": "String", "labeler": "String", "ranked_at": "String",
                   "source": "String", "kind": "String", "split": "String"}


def ranking_rows(rankings: list[Ranking], kind: str) -> list[dict]:
    """Rankings as preference_rankings' rows, each on the split its prompt hashes to (sft_data.split_of: one prompt
    in ten held out, so a prompt ranked twice lands on one side)."""
    from training.sft_data import split_of

    return [{"prompt": r.prompt, "responses": list(r.responses), "labeler": r.labeler, "ranked_at": r.ranked_at,
             "source": r.source, "kind": kind, "split": split_of(r.prompt)} for r in rankings]


def save_rankings(store, rows: list[dict], info: dict) -> None:
    """Writes the rankings as one parquet part (responses as JSON, best first) and commits it; no rows is a normal
    part with the same columns."""
    import polars as pl

    frame = pl.DataFrame({name: [json.dumps(r[name], ensure_ascii=False) if name == "responses" else r[name]
                                 for r in rows] for name in RANKINGS_SCHEMA},
                         schema={name: getattr(pl, kind) for name, kind in RANKINGS_SCHEMA.items()})
    store.write_part(PREFERENCE_RANKINGS, ALL, ALL, "00000", frame)
    store.commit(PREFERENCE_RANKINGS, ALL, ALL, ["00000"], info)


def load_rankings(store) -> list[dict]:
    """The committed preference_rankings' rows; PartitionMissing (a FileNotFoundError) if there are none."""
    frame = store.read(PREFERENCE_RANKINGS, ALL, ALL)
    return [{**r, "responses": json.loads(r["responses"])} for r in frame.iter_rows(named=True)]


def pair_rows(rows: list[dict]) -> list[dict]:
    """Every pair each row's ranking implies, as {prompt, chosen, rejected, kind, split}."""
    return [{"prompt": r["prompt"], "chosen": better, "rejected": worse, "kind": r["kind"], "split": r["split"]}
            for r in rows for better, worse in combinations(r["responses"], 2)]


class BadPair(ValueError):
    """A pairwise record the import skips; the message is the reason it is counted under."""


@dataclass(slots=True)
class PairwiseReport:
    uri: str
    records: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {**asdict(self), "skipped": dict(self.skipped)}


def read_pairwise(uri: str, storage_options: dict | None = None, labeler: str = "import") -> tuple[list[Ranking],
                                                                                                  PairwiseReport]:
    """Each usable record of a pairwise file as a ranking of two answers (chosen first), and what happened to each
    record. ValueError when none is usable."""
    report, rankings, at = PairwiseReport(uri), [], now()
    for record in _records(uri, storage_options or {}):
        report.records += 1
        try:
            prompt, chosen, rejected = pairwise(record)
            rankings.append(Ranking(prompt, (chosen, rejected), labeler, at, uri))
        except (BadPair, ValueError) as e:
            report.skipped[str(e)] += 1
    report.imported = len(rankings)
    if not rankings:
        raise ValueError(f"{uri}: none of its {report.records} records is a usable pair ({dict(report.skipped)})")
    return rankings, report


def pairwise(record) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) of one record in HH-RLHF's or UltraFeedback's form; BadPair saying why not."""
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError:
            raise BadPair("not JSON") from None
    if not isinstance(record, Mapping) or "chosen" not in record or "rejected" not in record:
        raise BadPair("no chosen and rejected")
    chosen, rejected = record["chosen"], record["rejected"]
    if record.get("prompt") is None and isinstance(chosen, str) and isinstance(rejected, str):
        return _hh(chosen, rejected)
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadPair("no prompt")
    answers = [_last_answer(a) for a in (chosen, rejected)]
    if not all(answers):
        raise BadPair("an empty answer")
    if answers[0] == answers[1]:
        raise BadPair("chosen and rejected are the same answer")
    return prompt.strip(), answers[0], answers[1]


def _hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    cut_c, cut_r = chosen.rfind(HH_ASSISTANT), rejected.rfind(HH_ASSISTANT)
    if cut_c < 0 or cut_r < 0 or HH_HUMAN not in chosen[:cut_c]:
        raise BadPair("not an HH-RLHF dialogue (no Human and Assistant turns)")
    if chosen[:cut_c] != rejected[:cut_r]:
        raise BadPair("chosen and rejected answer different dialogues")
    better, worse = chosen[cut_c + len(HH_ASSISTANT):].strip(), rejected[cut_r + len(HH_ASSISTANT):].strip()
    if not better or not worse:
        raise BadPair("an empty answer")
    if better == worse:
        raise BadPair("chosen and rejected are the same answer")
    return chosen[:cut_c].strip(), better, worse


def _last_answer(answer) -> str:
    """An answer given as a string, or as a list of messages ending with the assistant's."""
    if isinstance(answer, str):
        return answer.strip()
    if isinstance(answer, list) and answer and isinstance(answer[-1], Mapping):
        if answer[-1].get("role") != "assistant":
            raise BadPair("the last message is not the assistant's")
        content = answer[-1].get("content")
        return content.strip() if isinstance(content, str) else ""
    raise BadPair("an answer is neither text nor a list of messages")


def _records(uri: str, storage_options: dict) -> Iterator:
    if uri.endswith((".jsonl", ".jsonl.gz")):
        with fsspec.open(uri, "rt", encoding="utf-8", compression="infer", **storage_options) as f:
            yield from (line for line in f if line.strip())
        return
    if not uri.endswith(".parquet"):
        raise ValueError(f"{uri}: a pairwise file is .jsonl, .jsonl.gz or .parquet")
    import polars as pl

    with fsspec.open(uri, "rb", **storage_options) as f:
        yield from pl.read_parquet(f).iter_rows(named=True)
