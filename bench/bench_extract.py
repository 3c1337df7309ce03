"""Article extraction against trafilatura: accuracy on hand-marked article bodies, and pages/s on one core.

    .venv/bin/python -m bench.bench_extract [--runs N] [--dev DIR]

Input: the dev half of Scrapinghub's article-extraction-benchmark (91 news and blog pages with the article body a
person marked; ../shared/extraction-dev beside the clone), decoded as pipeline/extract.decode_html decodes a WARC
record. Extractors: ours (the default, resiliparse_pruned), plain resiliparse (its main-content mode, the previous
default), trafilatura with its defaults and with favor_precision=True. All run in this one process, one after the
other, single-threaded; pages/s is the best of N passes over the 91 pages.

Scoring follows the benchmark's published method: tokens are `\\w+` matches, a page's text is a multiset of 4-token
shingles; per page tp/fp/fn are shingle counts divided by their sum; precision and recall are means over pages, F1
their harmonic mean.
"""

from __future__ import annotations

import argparse
import os
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.common import best_of, save

# the dev half beside the clone, or where CRAWL2CHAT_EXTRACTION_DEV points
DEV_SET = Path(os.environ.get("CRAWL2CHAT_EXTRACTION_DEV") or Path(__file__).resolve().parents[2] / "shared" / "extraction-dev")
SHINGLE_TOKENS = 4
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class PageScore:
    tp: float  # shares of tp + fp + fn
    fp: float
    fn: float

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def shingles(text: str, n: int = SHINGLE_TOKENS) -> Counter:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def score_page(predicted: str, truth: str) -> PageScore | None:
    """Shingle overlap of one page; None when both texts are shorter than one shingle."""
    pred, true = shingles(predicted), shingles(truth)
    tp, fp, fn = sum((pred & true).values()), sum((pred - true).values()), sum((true - pred).values())
    total = tp + fp + fn
    return PageScore(tp / total, fp / total, fn / total) if total else None


def score(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """(predicted, true) texts -> mean precision, mean recall and their harmonic mean, as the benchmark computes."""
    pages = [s for s in (score_page(p, t) for p, t in pairs) if s is not None]
    precisions = [s.precision for s in pages if s.precision is not None]
    recalls = [s.recall for s in pages if s.recall is not None]
    if not precisions or not recalls:
        raise ValueError(f"nothing to score: {len(pages)} pages with shingles")
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def load_dev_set(root: Path = DEV_SET) -> tuple[list[str], list[str]]:
    """(decoded html, true article body) of every page, in key order."""
    from pipeline.extract import decode_html

    truth_file = root / "ground-truth.json"
    if not truth_file.exists():
        raise FileNotFoundError(f"no extraction dev set at {root}: expected {truth_file}")
    truth = json.loads(truth_file.read_text())
    html = [decode_html(gzip.decompress((root / "html" / f"{k}.html.gz").read_bytes()), None)[0] for k in sorted(truth)]
    return html, [truth[k]["articleBody"] for k in sorted(truth)]


def extractors() -> dict[str, Callable[[str], str]]:
    import trafilatura

    from pipeline.extract import DEFAULT_EXTRACTOR, extract_text

    return {
        f"ours ({DEFAULT_EXTRACTOR})": lambda h: extract_text(h),
        "resiliparse (main_content, previous default)": lambda h: extract_text(h, "resiliparse"),
        "trafilatura defaults": lambda h: trafilatura.extract(h) or "",
        "trafilatura favor_precision=True": lambda h: trafilatura.extract(h, favor_precision=True) or "",
    }


def run(root: Path, runs: int) -> list[dict]:
    html, truth = load_dev_set(root)
    rows = []
    for name, extract in extractors().items():
        outputs: list[str] = []

        def one_pass() -> int:
            outputs[:] = [extract(h) for h in html]
            return len(outputs)

        seconds, pages = best_of(one_pass, runs)
        rows.append({"extractor": name, **score(zip(outputs, truth)), "pages_per_s": pages / seconds, "pages": pages})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed passes per extractor; the best counts")
    parser.add_argument("--dev", type=Path, default=DEV_SET, help="folder with ground-truth.json and html/")
    args = parser.parse_args()
    quality = run(args.dev, args.runs)
    ours, reference = quality[0], next(r for r in quality if r["extractor"] == "trafilatura defaults")
    speed = [{
        "benchmark": "article extraction (91 dev pages)", "reference": reference["extractor"],
        "ours": ours["pages_per_s"], "ref": reference["pages_per_s"], "unit": "pages/s",
        "ratio": ours["pages_per_s"] / reference["pages_per_s"],
    }]
    save("extract", speed, quality=quality, runs=args.runs, dev_set=str(args.dev.resolve()))
    print("\n| extractor | F1 | precision | recall | pages/s | speed vs trafilatura |\n|---|---:|---:|---:|---:|---:|")
    for r in quality:
        print(f"| {r['extractor']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['pages_per_s']:.0f} | {r['pages_per_s'] / reference['pages_per_s']:.1f}x |")


if __name__ == "__main__":
    main()
