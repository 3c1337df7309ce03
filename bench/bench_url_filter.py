"""URL filter against datatrove's URLFilter (FineWeb's): URLs/s side by side, the same decisions on adult, and what
loading UT1's 4.6M adult domains costs.

    .venv/bin/python -m bench.bench_url_filter [--urls N]

Input (seeded): the bundled sample's URLs; URLs on domains drawn from UT1's adult list (the tarball in datatrove's
wheel) and from the shipped gambling list, each in one of four shapes ("https://d/", "https://www.d/a/b-c.html",
"http://d/a?id=n", "https://a.d/b"); and clean URLs made of words from the sample's pages on common TLDs (80% of N).
Rows (best of 3 interleaved rounds, ratio = ours / datatrove in URLs/s): ours with the adult category only, on
url columns of 10,000 rows as the url_filtered asset sees them, against datatrove's `URLFilter().filter(doc)` on
the same URLs as Documents (both inputs built before the clock starts); and ours with the four default categories. Asserted first: on adult, every URL gets the same decision and the same reason.
URLs made from UT1's own `urls` list are counted apart: datatrove compares the raw URL with its scheme to those
scheme-less entries, so it never matches one; ours does.
Load: constructing the filter in a fresh process, cold (empty cache folder) and warm, with the increase of its
resident memory (VmRSS) after a first batch; datatrove's `download_data()` (its lists as Python sets) beside it.
Held-out: drop rate per category on tests/pipeline/url_heldout.tsv (scripts/build_url_heldout.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from importlib.resources import files

import polars as pl

from bench.common import sample_files, save

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # datatrove's tldextract: bundled list, no fetch
BATCH = 10_000
HELDOUT = "tests/pipeline/url_heldout.tsv"


def _ut1(member: str) -> list[str]:
    with tarfile.open(files("datatrove") / "assets" / "url_filterblacklistsv0_3_0.tar.gz") as tar:
        return tar.extractfile(member).read().decode().split()


def url_mix(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(the mix, URLs made from UT1's urls list)."""
    from pipeline.warc import read_warc

    rng = random.Random(seed)
    sample, words = [], Counter()
    for f in sample_files():
        for batch in read_warc(f):
            sample += batch.records["url"].to_list()
            for html in batch.records["html"]:
                words.update(re.findall(r"[a-z]{3,10}", html[:20_000].decode("utf-8", "replace").lower()))
    vocab = [w for w, _ in words.most_common(3000)]

    def w() -> str:
        return rng.choice(vocab)

    gambling = [d for d in (files("pipeline") / "data/url_blocklist/gambling/domains.txt").read_text().split() if "." in d]
    listed = rng.sample(_ut1("domains"), n // 5) + [rng.choice(gambling) for _ in range(n // 100)]
    shapes = ("https://{d}/", "https://www.{d}/{a}/{b}-{c}.html", "http://{d}/{a}?id={n}", "https://{a}.{d}/{b}")
    urls = sample + [rng.choice(shapes).format(d=d, a=w(), b=w(), c=w(), n=rng.randrange(999)) for d in listed]
    tlds = ("com", "org", "net", "de", "co.uk", "fr", "io", "edu", "info", "com.au")
    while len(urls) < n:
        urls.append(f"https://{rng.choice(['www.', '', 'blog.'])}{w()}{w()}.{rng.choice(tlds)}/{w()}/{w()}-{w()}.html")
    rng.shuffle(urls)
    return urls[:n], ["http://" + u for u in rng.sample(_ut1("urls"), 2000)]


def ours_reasons(url_filter, batches: list[pl.Series]) -> list[str | None]:
    return [r for batch in batches for r in url_filter.reasons(batch).to_list()]


def datatrove_reasons(url_filter, docs: list) -> list[str | None]:
    out: list[str | None] = []
    for doc in docs:
        result = url_filter.filter(doc)
        out.append(None if result is True else f"adult:{result[1]}")
    return out


def side_by_side(name: str, ours: Callable[[], int], ref: Callable[[], int], reference: str, rounds: int = 3) -> dict:
    """bench.common.compare's row, with the rounds interleaved (ours, theirs, ours, ...): on a shared machine the
    load then moves both sides alike."""
    best_ours = best_ref = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        n = ours()
        best_ours = min(best_ours, time.perf_counter() - start)
        start = time.perf_counter()
        n_ref = ref()
        best_ref = min(best_ref, time.perf_counter() - start)
    return {
        "benchmark": name, "reference": reference, "items_ours": n, "items_ref": n_ref, "ours": n / best_ours,
        "ref": n_ref / best_ref, "unit": "URLs/s", "ratio": (n / best_ours) / (n_ref / best_ref),
    }  # fmt: skip


def probe(which: str, cache_dir: str) -> dict:
    """Run in a fresh process: seconds to a filter ready for its first URL, and the resident memory it added."""

    def rss_mb() -> float:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024

    urls = [f"https://www.example{i}.com/page" for i in range(BATCH)]
    if which == "ours":
        from pipeline.url_filter import URLFilter

        before, start = rss_mb(), time.perf_counter()
        url_filter = URLFilter(["adult"], cache_dir=cache_dir)
        url_filter.filter_urls(urls[:1])
        seconds = time.perf_counter() - start
        url_filter.filter_urls(urls)
    else:
        from datatrove.pipeline.filters import URLFilter

        before, start = rss_mb(), time.perf_counter()
        url_filter = URLFilter()
        url_filter.download_data()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_mb": rss_mb() - before}


def _probe_in_subprocess(which: str, cache_dir: str) -> dict:
    code = f"import json; from bench.bench_url_filter import probe; print(json.dumps(probe({which!r}, {cache_dir!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def heldout_rates() -> dict:
    from pipeline.url_filter import URLFilter

    df = pl.read_csv(HELDOUT, separator="\t", comment_prefix="#", quote_char=None)
    df = df.with_columns(reason=URLFilter().reasons(df["url"]))
    rates = df.group_by("category").agg(n=pl.len(), dropped=pl.col("reason").is_not_null().sum())
    return {r["category"]: {"urls": r["n"], "dropped": r["dropped"], "rate": r["dropped"] / r["n"]} for r in rates.iter_rows(named=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=200_000)
    args = parser.parse_args()

    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter as DatatroveURLFilter

    from pipeline.url_filter import URLFilter

    urls, ut1_urls = url_mix(args.urls)
    adult, default = URLFilter(["adult"]), URLFilter()
    reference = DatatroveURLFilter()
    reference.download_data()
    # inputs made outside the timing: a parquet part's url column for ours, a reader's Documents for datatrove
    batches = [pl.Series("url", urls[i : i + BATCH]) for i in range(0, len(urls), BATCH)]
    docs = [Document(text="", id=str(i), metadata={"url": u}) for i, u in enumerate(urls)]

    ours, theirs = ours_reasons(adult, batches), datatrove_reasons(reference, docs)
    differ = [(u, a, b) for u, a, b in zip(urls, ours, theirs) if a != b]
    assert not differ, f"{len(differ)} URLs differ from datatrove on adult, e.g. {differ[:5]}"
    agreement = {"urls": len(urls), "dropped": sum(r is not None for r in ours), "by_reason": Counter(r for r in ours if r)}
    ours_ut1 = ours_reasons(adult, [pl.Series("url", ut1_urls)])
    theirs_ut1 = datatrove_reasons(reference, [Document(text="", id="u", metadata={"url": u}) for u in ut1_urls])
    agreement["ut1_urls_list"] = {
        "urls": len(ut1_urls), "dropped_ours": sum(r is not None for r in ours_ut1),
        "dropped_datatrove": sum(r is not None for r in theirs_ut1),
        "dropped_by_url_ours": sum(r == "adult:url" for r in ours_ut1),
        "dropped_by_url_datatrove": sum(r == "adult:url" for r in theirs_ut1),
    }  # fmt: skip

    rows = [
        side_by_side("URL filter, adult (UT1 + FineWeb words)", lambda: len(ours_reasons(adult, batches)),
                     lambda: len(datatrove_reasons(reference, docs)), "datatrove URLFilter"),
        side_by_side("URL filter, 4 categories", lambda: len(ours_reasons(default, batches)),
                     lambda: len(datatrove_reasons(reference, docs)), "datatrove URLFilter (adult)"),
    ]  # fmt: skip

    with tempfile.TemporaryDirectory() as cache:
        load = {"ours_cold": _probe_in_subprocess("ours", cache), "ours_warm": _probe_in_subprocess("ours", cache)}
    load["datatrove"] = _probe_in_subprocess("datatrove", "")
    described = adult.describe()["categories"]["adult"]["domains"]
    collisions = {
        "entries": described["entries"], "distinct_hashes": described["hashes"],
        "colliding_entries": described["entries"] - described["hashes"],
        "false_drop_chance_per_lookup": described["hashes"] / 2**64,
    }  # fmt: skip
    path = save("url_filter", rows, agreement=agreement, load=load, collisions=collisions, heldout=heldout_rates())
    print(f"\nidentical decisions and reasons on adult: {len(urls)} URLs, {agreement['dropped']} dropped")
    print(f"UT1 urls-list URLs: {json.dumps(agreement['ut1_urls_list'])}")
    for name, m in load.items():
        print(f"load {name}: {m['seconds']:.2f} s, +{m['rss_mb']:.0f} MB RSS")
    print(f"hash collisions: {json.dumps(collisions)}")
    print(f"held-out: {json.dumps(heldout_rates())}\nwrote {path}")


if __name__ == "__main__":
    main()
