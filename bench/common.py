"""What every benchmark shares: the sample's pages and English documents, timing, the machine, the results file."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.sources import SAMPLE_SOURCE, resolve_source

OUT = Path("bench/out")


def best_of(fn: Callable[[], int], runs: int = 3) -> tuple[float, int]:
    """(best seconds, items the call reported)."""
    best, items = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        items = fn()
        best = min(best, time.perf_counter() - start)
    return best, items


def sample_files() -> list[str]:
    return sorted(str(p) for p in Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz"))


def pages(files: list[str]) -> list[tuple[bytes, str | None]]:
    """(html bytes, declared charset) of every HTML response in the files."""
    from pipeline.warc import read_warc

    return [(r["html"], r["charset"]) for f in files for b in read_warc(f) for r in b.records.iter_rows(named=True)]


def english_docs(raw: list[tuple[bytes, str | None]] | None = None) -> list[str]:
    """Main text of the English pages (lid.176 score >= 0.65): the documents the later stages see."""
    from pipeline.extract import decode_html, extract_text
    from pipeline.langid import identify

    raw = pages(sample_files()) if raw is None else raw
    texts = [t for t in (extract_text(decode_html(h, c)[0]) for h, c in raw) if t]
    return [t for t, (lang, score) in zip(texts, identify(texts)) if lang == "en" and score >= 0.65]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def save(name: str, rows: list[dict], **extra) -> Path:
    """Writes bench/out/{name}.json with the machine, and prints the rows as a markdown table."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "rows": rows, **extra}, indent=1))
    print(f"\nmachine: {machine()}\n")
    print("| benchmark | ours | reference | unit | ratio |\n|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['ours']:.0f} | {r['ref']:.0f} ({r['reference']}) | {r['unit']} | {r['ratio']:.2f}x |")
    return path


def compare(name: str, ours: Callable[[], int], ref: Callable[[], int], reference: str, unit: str = "docs/s") -> dict:
    """One row: items/s of ours and of the reference (best of 3 each) and their ratio."""
    t_ours, n_ours = best_of(ours)
    t_ref, n_ref = best_of(ref)
    return {
        "benchmark": name, "reference": reference, "items_ours": n_ours, "items_ref": n_ref,
        "ours": n_ours / t_ours, "ref": n_ref / t_ref, "unit": unit, "ratio": (n_ours / t_ours) / (n_ref / t_ref),
    }
