"""The search tool's index: BM25 ranking on hand-made cases where a wrong formula ranks differently, passages of the
bundled sample's real pages, and a save/load round trip through real parquet files."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from pipeline.documents import CLEAN_SCHEMA, iter_clean
from pipeline.extract import decode_html, extract_text
from pipeline.search import (
    NO_RESULTS,
    SearchIndex,
    StaleIndex,
    fingerprint,
    format_results,
    split_passages,
)
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.storage import PartitionMissing, Store
from pipeline.warc import read_warc

PYTHON = (
    "Python is a high-level, general-purpose programming language. Its design philosophy emphasizes code "
    "readability with the use of significant indentation. Python is dynamically typed and garbage-collected: "
    "CPython frees most objects by reference counting and runs a cycle-detecting garbage collector for the rest."
)
KERNEL = (
    "The Linux kernel is a free and open-source, monolithic, Unix-like operating system kernel. The scheduler "
    "decides which task runs next on each processor, and interrupt handlers run when hardware needs attention. "
    "Device drivers make up most of the kernel's source code."
)


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def sample_docs() -> list[tuple[str, str, str]]:
    """(id, url, text) of every page of the bundled sample crawl that has text."""
    docs = []
    for path in sorted(Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz")):
        rows = [r for batch in read_warc(str(path)) for r in batch.records.iter_rows(named=True)]
        docs += [(r["id"], r["url"], text) for r in rows if (text := extract_text(decode_html(r["html"], r["charset"])[0]))]
    return docs


@pytest.fixture(scope="module")
def sample_index(sample_docs) -> SearchIndex:
    return SearchIndex.build(sample_docs)


@pytest.fixture
def small_index(prose) -> SearchIndex:
    return SearchIndex.build([("debian", "https://debian.org/intro", prose), ("python", "https://python.org/about", PYTHON),
                              ("kernel", "https://kernel.org/about", KERNEL)])


# -- passages --------------------------------------------------------------------------------------------------------
def test_long_documents_are_split_into_passages_that_keep_every_word(sample_docs):
    text = max((d[2] for d in sample_docs), key=lambda t: len(t.split()))
    passages = split_passages(text, passage_words=100)
    counts = [len(p.split()) for p in passages]
    assert len(text.split()) > 2000 and len(passages) >= len(text.split()) // 125
    assert max(counts) <= 125
    assert words(" ".join(passages)) == words(text)  # nothing lost, nothing repeated, order kept
    # a heading stays with the paragraph below it rather than being a passage of its own
    assert split_passages("2.2. Master Plan\n" + "word " * 99, 100)[0].startswith("2.2. Master Plan\nword")
    with pytest.raises(ValueError, match="got 0"):
        split_passages(text, passage_words=0)


def test_a_hit_is_a_passage_of_its_document_not_the_whole_document(sample_docs, sample_index):
    hits = sample_index.search("zipimport zip archives", k=3)
    assert hits[0].url == "https://docs.python.org/3.11/library/zipimport.html"
    doc = {d[0]: d[2] for d in sample_docs}[hits[0].doc_id]
    for hit in hits:
        assert len(hit.text.split()) <= 125 < len(doc.split())
        assert words(hit.text) in words({d[0]: d[2] for d in sample_docs}[hit.doc_id])


# -- ranking ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query, best", [("Hurd microkernel", "debian"), ("garbage collector reference counting", "python"),
                                         ("scheduler interrupt handlers", "kernel")])
def test_the_relevant_document_ranks_first(small_index, query, best):
    hits = small_index.search(query, k=3)
    assert hits[0].doc_id == best and hits[0].score > (hits[1].score if len(hits) > 1 else 0)


@pytest.mark.parametrize("query, url", [("marshal serialization", "https://docs.python.org/3.11/library/marshal.html"),
                                        ("Evolution GNOME email client",
                                         "https://debian-handbook.info/browse/en-US/stable/sect.main-desktop-tools.html")])
def test_distinctive_queries_find_their_page_in_the_sample_crawl(sample_index, query, url):
    assert sample_index.search(query, k=1)[0].url == url


def test_rare_terms_outweigh_repeated_common_ones():
    # equal lengths; "kernel" is in 5 of 6 documents, "hurd" in one. Counting matches alone ranks "a" first (two
    # kernels beat one hurd); idf must put "b" first.
    docs = [("a", "u/a", "the kernel talks to the kernel drivers today"), ("b", "u/b", "the hurd is a set of servers today")]
    docs += [(c, f"u/{c}", f"a kernel runs {c} programs on this machine") for c in "cdef"]
    hits = SearchIndex.build(docs).search("kernel hurd", k=6)
    assert [h.doc_id for h in hits[:2]] == ["b", "a"]  # and two kernels still beat one
    assert hits[0].score > 2 * hits[1].score


def test_long_passages_are_penalized():
    # both mention "hurd" once; only length tells them apart, and doc_id tie-breaking would favour the long one
    long = " ".join(f"filler{i}" for i in range(90)) + " hurd"
    docs = [("a-long", "u/long", long), ("b-short", "u/short", "the hurd runs on a microkernel"), ("c", "u/c", "other")]
    assert [h.doc_id for h in SearchIndex.build(docs).search("hurd", k=2)] == ["b-short", "a-long"]
    flat = SearchIndex.build(docs, b=0.0).search("hurd", k=2)  # no length normalization: a tie
    assert flat[0].score == flat[1].score and [h.doc_id for h in flat] == ["a-long", "b-short"]


def test_k_is_respected_and_ties_break_by_doc_id_whatever_the_input_order():
    docs = [(f"d{i}", f"u/{i}", f"debian release {i} ships the linux kernel") for i in (4, 2, 3, 1, 0)]
    docs += [("twin-y", "u/y", "the hurd and the kernel"), ("twin-x", "u/x", "the hurd and the kernel")]
    index = SearchIndex.build(docs)
    for k in (1, 2, 4):
        assert len(index.search("kernel", k=k)) == k
    assert len(index.search("kernel", k=50)) == 7  # every match, no padding
    twins = index.search("hurd", k=5)
    assert [h.doc_id for h in twins] == ["twin-x", "twin-y"] and twins[0].score == twins[1].score
    assert SearchIndex.build(docs[::-1]).search("kernel release", k=7) == index.search("kernel release", k=7)
    with pytest.raises(ValueError, match="got 0"):
        index.search("kernel", k=0)


@pytest.mark.parametrize("query", ["", "   ", "?!...", "zyzzyva quux"])
def test_empty_or_unmatched_query_returns_nothing(small_index, query):
    assert small_index.search(query) == []


def test_a_frame_builds_the_same_index_as_tuples_and_bad_input_is_named(prose):
    triples = [("debian", "u/d", prose), ("python", "u/p", PYTHON)]
    frame = pl.DataFrame([{"text": t, "id": i, "url": u, "dump": "c"} for i, u, t in triples],
                         schema={k: CLEAN_SCHEMA[k] for k in ("text", "id", "url", "dump")})
    assert SearchIndex.build(frame).search("debian python", k=5) == SearchIndex.build(triples).search("debian python", k=5)
    with pytest.raises(ValueError, match=r"\['url'\]"):
        SearchIndex.build(frame.drop("url"))
    with pytest.raises(ValueError, match="'python' occurs more than once"):
        SearchIndex.build([*triples, ("python", "u/p2", "again")])


# -- what the model sees ---------------------------------------------------------------------------------------------
def test_format_results_numbers_hits_and_fits_max_chars(sample_index, small_index):
    hits = sample_index.search("apt sources.list mirror", k=3)
    assert sum(len(h.text) for h in hits) > 300
    text = format_results(hits, max_chars=300)
    assert len(text) <= 300
    blocks = text.split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [f"[{n}] {h.url}" for n, h in enumerate(hits, 1)]
    assert all(b.endswith("…") for b in blocks)  # each passage was cut, none dropped for the first one's length
    short = small_index.search("kernel", k=2)
    assert format_results(short, max_chars=2000) == "\n\n".join(f"[{n}] {h.url}\n{h.text}" for n, h in enumerate(short, 1))
    assert format_results([]) == NO_RESULTS
    with pytest.raises(ValueError, match="got 3"):
        format_results(short, max_chars=3)


# -- persistence -----------------------------------------------------------------------------------------------------
def test_save_and_load_give_identical_hits_and_detect_a_stale_index(tmp_path, sample_docs):
    store = Store(str(tmp_path))
    for shard, chunk in (("00000", sample_docs[::2]), ("00001", sample_docs[1::2])):  # clean_documents, as stored
        rows = [{"text": t, "id": i, "dump": "c", "url": u} for i, u, t in chunk]
        store.write_part("clean_documents", "c", shard, "00000-00000", pl.DataFrame(rows, schema=CLEAN_SCHEMA))
        store.commit("clean_documents", "c", shard, ["00000-00000"], {})
    with pytest.raises(PartitionMissing):
        SearchIndex.load(store)
    built = SearchIndex.build(iter_clean(store, {"c": ["00000", "00001"]}, ("id", "url", "text")))
    info = built.save(store)
    assert sorted(os.listdir(tmp_path / "search_index/all/all")) == [
        "_manifest.json", "part-passages.parquet", "part-postings.parquet", "part-terms.parquet"]
    assert info["stats"]["passages"] == len(built) and info["params"] == {"passage_words": 100, "k1": 1.2, "b": 0.75}

    ids = [d[0] for d in sample_docs]
    expected = fingerprint(ids, passage_words=100, k1=1.2, b=0.75)
    loaded = SearchIndex.load(store, expected_fingerprint=expected)
    for query in ("zipimport zip archives", "apt sources.list mirror", "floating point representation error", "kernel"):
        assert loaded.search(query, k=5) == built.search(query, k=5) != []
    assert fingerprint(ids[1:], passage_words=100, k1=1.2, b=0.75) != expected
    assert fingerprint(ids, passage_words=100, k1=1.5, b=0.75) != expected
    with pytest.raises(StaleIndex, match="rebuild it"):
        SearchIndex.load(store, expected_fingerprint=fingerprint(ids[1:], passage_words=100, k1=1.2, b=0.75))
