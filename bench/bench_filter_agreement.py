"""Do our quality filters keep and drop the same documents as datatrove's, for the same reasons?

    .venv/bin/python -m scripts.build_doc_pages          (once: ~3,500 pages of Debian docs into bench/out/doc_pages)
    .venv/bin/python -m bench.bench_filter_agreement [--pages DIR]

Input: the bundled sample's WARC files plus the doc pages, each page extracted with our default extractor and kept
if lid.176 says English at >= 0.65, as the pipeline does; exact duplicate texts are counted once.
Both chains run FineWeb's order and settings: Gopher repetition, Gopher quality, C4 (terminal punctuation rule
off), FineWeb quality. Ours runs twice: with the pipeline's defaults, and with alpha_ratio_counts_punctuation=True,
datatrove's definition of Gopher's alphabetic-word ratio (our default keeps the paper's). Reported for each: keep/drop
agreement of the whole chain and of each filter on the documents that reached it with the same text on both sides,
reason agreement, seconds per chain (ours first with a cold token cache), and every disagreement with both reasons
and the measured values (bench/out/filter_agreement.json).

datatrove runs offline: for English its word tokenizer and sentence splitter are spaCy's blank "en" pipeline with
the rule-based sentencizer (datatrove >= 0.3 no longer uses nltk punkt); both ship in the spacy wheel, so nothing
is downloaded. FineWebQualityFilter is given FineWeb's stop characters (. ' " ! ?) as its FineWeb run had them;
datatrove 0.10's default is a table of Unicode sentence-ending marks without the quotes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from bench.common import OUT, machine, sample_files
from pipeline.documents import Document
from pipeline.filters import quality as ours_q

FILTER_NAMES = ("gopher_rep", "gopher_qual", "c4", "fineweb_qual")
FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")  # datatrove's STOP_CHARS when FineWeb was built (2024)


def english_documents(files: list[str]) -> tuple[list[tuple[str, str]], dict]:
    """(url, main text) of the English pages in `files`, exact duplicate texts once; and counts for the report."""
    from pipeline.extract import decode_html, extract_text
    from pipeline.langid import DEFAULT_THRESHOLD, identify
    from pipeline.warc import read_warc

    urls, texts = [], []
    n_pages = 0
    for f in tqdm(files, desc="extracting", unit="file"):
        for batch in read_warc(f):
            for row in batch.records.iter_rows(named=True):
                n_pages += 1
                text = extract_text(decode_html(row["html"], row["charset"])[0])
                if text:
                    urls.append(row["url"])
                    texts.append(text)
    english, seen = [], set()
    for url, text, (lang, score) in zip(urls, texts, identify(texts)):
        if lang == "en" and score >= DEFAULT_THRESHOLD and text not in seen:
            seen.add(text)
            english.append((url, text))
    return english, {"pages": n_pages, "with_text": len(texts), "english_distinct": len(english)}


def datatrove_filters() -> list:
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    return [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(stop_chars=FINEWEB_STOP_CHARS)]


def verdict(name: str, result) -> str | None:
    """A filter's result written as ours are: None for keep, else "{our filter name}:{reason}" (datatrove's
    Gopher quality reasons lose their "gopher_" prefix, which our filter name already says)."""
    if result is True or (isinstance(result, tuple) and result[0]):
        return None
    reason = result[1] if isinstance(result, tuple) else "dropped"
    return f"{name}:{reason.removeprefix('gopher_')}"


def chain(filters: list, doc) -> list[tuple[str, str | None, str]]:
    """(filter, verdict, the text it saw) for each filter run, up to the first that drops; works for both sides."""
    steps = []
    for name, f in zip(FILTER_NAMES, filters):
        seen = doc.text
        reason = verdict(name, f.filter(doc))
        steps.append((name, reason, seen))
        if reason:
            break
    return steps


def run_chain(filters: list, texts: list[str], make_doc, desc: str) -> tuple[list[list], float]:
    start = time.perf_counter()
    steps = [chain(filters, make_doc(text)) for text in tqdm(texts, desc=desc, unit="doc")]
    return steps, time.perf_counter() - start


def compare(url: str, ours: list, theirs: list) -> dict:
    """Both chains' final verdicts and, per filter both ran on the same text, the two verdicts."""
    per_filter = {}
    for (name, r_ours, seen), (_, r_dt, seen_dt) in zip(ours, theirs):
        if seen != seen_dt:  # only after C4 kept the document on one side and not the other; never reached
            break
        per_filter[name] = (r_ours, r_dt, seen)
    return {"url": url, "ours": ours[-1][1], "datatrove": theirs[-1][1], "per_filter": per_filter}


# ------------------------------------------------------------------------------------------- measured values


def measured(name: str, text: str) -> dict:
    """The quantities filter `name` tests, as (ours, datatrove) where the two compute them differently."""
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams
    from datatrove.utils.text import PUNCTUATION_SET, split_into_sentences, split_into_words

    ours_words, dt_words = ours_q.words(text), split_into_words(text)
    n = len(text)
    if name == "gopher_rep":
        top = {f"top_{k}_gram_frac": (round(ours_q.top_n_gram_chars(ours_words, k) / n, 4),
                                      round(find_top_duplicate(get_n_grams(dt_words, k)) / n, 4) if len(dt_words) >= k else 0)
               for k, _ in ours_q.GopherRepetitionFilter().top_n_grams}
        dup = {f"dup_{k}_gram_frac": (round(ours_q.duplicated_n_gram_chars(ours_words, k) / n, 4),
                                      round(find_all_duplicate(dt_words, k) / n, 4))
               for k, _ in ours_q.GopherRepetitionFilter().dup_n_grams}
        return top | dup
    if name == "gopher_qual":
        ours_w = [w for w in ours_words if not ours_q.is_symbol(w)]
        dt_w = [w for w in dt_words if any(ch not in PUNCTUATION_SET for ch in w)]
        stop = set(ours_q.GOPHER_STOP_WORDS)
        return {
            "words": (len(ours_w), len(dt_w)),
            "avg_word_length": (round(sum(map(len, ours_w)) / max(1, len(ours_w)), 3),
                                round(sum(map(len, dt_w)) / max(1, len(dt_w)), 3)),
            "alpha_words_ratio": (round(sum(any(c.isalpha() for c in w) for w in ours_w) / max(1, len(ours_w)), 4),
                                  round(sum(any(c.isalpha() for c in w) for w in dt_words) / max(1, len(dt_words)), 4)),
            "hash_ratio": (round(text.count("#") / max(1, len(ours_words)), 4),
                           round(text.count("#") / max(1, len(dt_words)), 4)),
            "distinct_stop_words": (len(stop & set(ours_words)), len(stop & set(dt_words))),
        }
    if name == "c4":
        c4 = ours_q.C4QualityFilter()
        probe = Document(text, "")
        c4.filter(probe)  # the lines C4 keeps are the same on both sides; the sentence counts are not
        lines = [line for line in probe.text.split("\n") if line]
        return {"sentences": (sum(ours_q.sentence_count(line) for line in lines),
                              sum(len(split_into_sentences(line)) for line in lines)), "kept_lines": len(lines)}
    lines = text.split("\n")
    return {
        "line_punct_ratio": round(sum(line.endswith(FINEWEB_STOP_CHARS) for line in lines) / len(lines), 4),
        "short_line_ratio": round(sum(len(line) <= 30 for line in lines) / len(lines), 4),
        "char_dup_ratio": round(ours_q.find_duplicates([x for x in lines if x.strip()])[1] / max(1, len(text.replace("\n", ""))), 4),
        "list_ratio": (round(text.count("\n") / max(1, len(ours_words)), 4), round(text.count("\n") / max(1, len(dt_words)), 4)),
    }


def disagreement(result: dict) -> dict:
    """The first filter where the two chains part, its two verdicts and its measured values."""
    for name, (r_ours, r_dt, seen_text) in result["per_filter"].items():
        if r_ours != r_dt:
            return {"url": result["url"], "filter": name, "ours": r_ours, "datatrove": r_dt,
                    "chain_ours": result["ours"], "chain_datatrove": result["datatrove"],
                    "values": measured(name, seen_text), "text_head": seen_text[:300]}
    raise AssertionError(f"no differing filter for {result['url']}")


# ------------------------------------------------------------------------------------------- report


def summarize(results: list[dict]) -> dict:
    n = len(results)
    keep_agree = sum((r["ours"] is None) == (r["datatrove"] is None) for r in results)
    reason_agree = sum(r["ours"] == r["datatrove"] for r in results)
    rows = [{"filter": "whole chain", "docs": n, "keep_drop_agree": keep_agree, "reason_agree": reason_agree,
             "dropped_ours": sum(r["ours"] is not None for r in results),
             "dropped_datatrove": sum(r["datatrove"] is not None for r in results)}]
    for name in FILTER_NAMES:
        pairs = [r["per_filter"][name][:2] for r in results if name in r["per_filter"]]
        rows.append({"filter": name, "docs": len(pairs),
                     "keep_drop_agree": sum((a is None) == (b is None) for a, b in pairs),
                     "reason_agree": sum(a == b for a, b in pairs),
                     "dropped_ours": sum(a is not None for a, _ in pairs),
                     "dropped_datatrove": sum(b is not None for _, b in pairs)})
    return {"rows": rows,
            "reasons_ours": Counter(r["ours"] or "kept" for r in results).most_common(),
            "reasons_datatrove": Counter(r["datatrove"] or "kept" for r in results).most_common()}


def print_table(summary: dict) -> None:
    print("| filter | docs in | keep/drop agree | reason agree | dropped (ours) | dropped (datatrove) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in summary["rows"]:
        d = max(1, r["docs"])
        print(f"| {r['filter']} | {r['docs']} | {r['keep_drop_agree']} ({100 * r['keep_drop_agree'] / d:.2f}%) | "
              f"{r['reason_agree']} ({100 * r['reason_agree'] / d:.2f}%) | {r['dropped_ours']} | {r['dropped_datatrove']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=Path, default=Path("bench/out/doc_pages"),
                        help="folder of WARC files from scripts/build_doc_pages.py (default: bench/out/doc_pages)")
    args = parser.parse_args()
    extra = sorted(str(p) for p in args.pages.glob("*.warc.gz"))
    if not extra:
        raise SystemExit(f"no WARC files in {args.pages}: run `.venv/bin/python -m scripts.build_doc_pages` first")
    docs, counts = english_documents(sample_files() + extra)

    from datatrove.data import Document as DtDocument

    texts = [text for _, text in docs]
    theirs, t_dt = run_chain(datatrove_filters(), texts, lambda t: DtDocument(text=t, id=""), "datatrove")
    configs = {}
    for config, filters in our_configs().items():
        ours, t_ours = run_chain(filters, texts, lambda t: Document(t, ""), f"ours ({config})")
        configs[config] = ([compare(url, a, b) for (url, _), a, b in zip(docs, ours, theirs)], t_ours)
    report = {"machine": machine(), "counts": counts, "seconds_datatrove": round(t_dt, 1), "configs": {}}
    for config, (results, t_ours) in configs.items():
        summary = summarize(results)
        disagreements = [disagreement(r) for r in results if r["ours"] != r["datatrove"]]
        report["configs"][config] = {"seconds_ours": round(t_ours, 1), **summary, "disagreements": disagreements}
        print(f"\n## ours: {config}; {t_ours:.1f} s vs datatrove {t_dt:.1f} s ({t_dt / t_ours:.2f}x docs/s)")
        print_table(summary)
        for d in disagreements if len(disagreements) <= 40 else []:
            print(f"  {d['filter']}: ours={d['ours']} datatrove={d['datatrove']} {d['values']} {d['url']}")
        print(f"{len(disagreements)} documents where the final verdicts differ")
    print(f"\nmachine: {machine()}\npages: {counts}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "filter_agreement.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"every disagreement, with both reasons and the measured values: {path}")


def our_configs() -> dict[str, list]:
    """The pipeline's chain, and the same with datatrove's (FineWeb's) alpha ratio over all tokens."""
    fineweb_exact = ours_q.default_quality_filters()
    fineweb_exact[1] = ours_q.GopherQualityFilter(alpha_ratio_counts_punctuation=True)
    return {"pipeline defaults": ours_q.default_quality_filters(),
            "alpha_ratio_counts_punctuation=True": fineweb_exact}


if __name__ == "__main__":
    main()
