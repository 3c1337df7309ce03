import json
import random
import socket
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.documents import Document
from pipeline.filters.base import apply_filters
from pipeline.public_suffix import public_suffixes
from pipeline.url_filter import URLFilter, hosts
from pipeline.url_lists import (
    DEFAULT_CATEGORIES,
    CategoryLists,
    HashedList,
    datatrove_adult,
    from_ut1_folder,
    load_category,
)

HELDOUT = Path(__file__).with_name("url_heldout.tsv")


@pytest.fixture(scope="module")
def uf() -> URLFilter:
    return URLFilter()


# The URLs the sample crawl plants, and the reason each gets. "bestpornsite" is in none of FineWeb's lists (its
# subwords are phrases such as "free sex video"; "porn" is a whole-word ban), so FineWeb's filter keeps it.
PLANTED = [
    ("https://www.pornhub.com/view_video.php?viewkey=ph5f3a", "adult:domain"),
    ("https://cheap-deals.example.com/xxx/free-clips.html", "adult:hard_blacklisted"),
    ("https://dating.example.net/sexy-nude-escort-girls.html", "adult:soft_blacklisted"),
    ("https://www.bestpornsite.example.org/index.html", None),
]
SURVIVORS = [
    "https://debian-handbook.info/browse/en-US/stable/sect.apt-get.html",
    "https://docs.python.org/3.11/library/sqlite3.html",
    "https://www.middlesex.gov.uk/essex-sussex-news",
    "https://en.wikipedia.org/wiki/Hot_spring",
]


@pytest.mark.parametrize("url,reason", PLANTED)
def test_planted_urls_get_their_reason(uf, url, reason):
    assert uf.reason(url) == reason
    assert uf.filter(Document(text="", id="x", metadata={"url": url})) == (True if reason is None else (False, reason))


def test_innocent_urls_survive(uf):
    assert uf.filter_urls(SURVIVORS) == [None] * len(SURVIVORS)
    assert uf.reason("https://www.timeanddate.com/calendar/time-slots") is None  # one gambling soft word
    assert uf.reason("https://x.com/slots-bonus") == "gambling:soft_blacklisted"  # two


def test_filter_urls_matches_reason_in_order(uf):
    urls = [u for u, _ in PLANTED] + SURVIVORS + ["not a url", None]
    assert uf.filter_urls(urls) == [r for _, r in PLANTED] + [None] * len(SURVIVORS) + ["invalid_url"] * 2
    assert uf.filter_urls([]) == []
    assert uf.reasons(pl.Series(urls)).to_list() == uf.filter_urls(urls)


def test_domains_follow_datatrove_registered_domain_then_whole_host():
    f = URLFilter([CategoryLists.of("adult", domains=["blocked.com", "sub.listed.com", "bbc.co.uk", "www.only.com"])])
    assert f.reason("https://blocked.com/") == "adult:domain"
    assert f.reason("https://a.b.blocked.com/page") == "adult:domain"  # its registered domain is listed
    assert f.reason("https://sub.listed.com/") == "adult:subdomain"  # the whole host is listed
    assert f.reason("https://a.sub.listed.com/") is None  # neither: datatrove checks no intermediate parent
    assert f.reason("https://listed.com/") is None
    assert f.reason("https://forums.bbc.co.uk/news") == "adult:domain"  # public suffix co.uk
    assert f.reason("https://www.only.com/") == "adult:subdomain" and f.reason("https://only.com/") is None
    assert f.reason("https://notblocked.com/") is None and f.reason("https://blocked.com.evil.org/") is None
    # no public suffix, no registered domain: datatrove (tldextract) never matches these
    g = URLFilter([CategoryLists.of("adult", domains=["blocked.test", "10.0.0.7", "localhost"])])
    assert g.filter_urls(["https://blocked.test/", "http://10.0.0.7:8000/", "http://localhost/"]) == [None] * 3


def test_host_normalisation(uf):
    assert uf.reason("HTTPS://WWW.XVIDEOS.COM:8080/Video123/") == "adult:domain"  # datatrove keeps this one
    assert uf.reason("http://user:secret@xhamster.com:443/") == "adult:domain"
    assert uf.reason("https://xhamster.com./") == "adult:domain"
    assert uf.reason("  https://de.pornhub.com/categories  ") == "adult:domain"
    got = hosts(pl.Series(["https://a@b@c.com:9/x", "//x.org?q", "http://[::1]:80/", "ftp://h.com#f", "mailto:a@b.c", "x"]))
    assert got.to_list() == ["c.com", "x.org", "[::1]", "h.com", "", ""]


@pytest.mark.parametrize("url", ["not a url", "", None, "   ", "mailto:someone@example.org", "https:///path-only"])
def test_urls_without_host_are_invalid(uf, url):
    assert uf.reason(url) == "invalid_url"


def test_public_suffix_walk_matches_tldextract():
    """Every registered domain found by the vectorised walk is tldextract's, on hosts built to hit every rule kind."""
    from tldextract import TLDExtract

    extract = TLDExtract(suffix_list_urls=(), cache_dir=None)
    rules = sorted(extract.tlds)
    rng = random.Random(0)
    hosts_ = [f"{rng.choice(['', 'www.', 'a.b.'])}name{i}.{rng.choice(rules).lstrip('*!.').replace('*', 'x')}" for i in range(3000)]
    hosts_ += [r.lstrip("!").replace("*", "w") for r in rules if r.startswith(("*", "!"))]  # wildcards, exceptions
    hosts_ += ["com", "co.uk", "localhost", "1.2.3.4", "xn--80ak6aa92e.com", "пример.рф", "a.xn--p1ai", "x.city.kawasaki.jp",
               "y.kawasaki.jp", "z.b.ck", "www.ck", "a..com", "a..b.com", ".com"]  # fmt: skip
    _, level = public_suffixes().registered_domains(pl.Series(hosts_))
    ours = [".".join(h.split(".")[-lv:]) if lv else "" for h, lv in zip(hosts_, level)]
    theirs = [extract(h).top_domain_under_public_suffix for h in hosts_]
    assert [(h, a, b) for h, a, b in zip(hosts_, ours, theirs) if a != b] == []


def test_same_decisions_as_datatrove_on_adult():
    pytest.importorskip("ahocorasick", reason="datatrove's URLFilter needs pyahocorasick (the dev and bench extras)")
    from datatrove.data import Document as DatatroveDocument
    from datatrove.pipeline.filters import URLFilter as DatatroveURLFilter

    rng = random.Random(1)
    domains = ["pornhub.com", "xvideos.com", "chaturbate.com", "blogspot.com", "example.com", "debian.org", "bbc.co.uk"]
    words = ["free", "sex", "video", "porn", "news", "hot", "girls", "nude", "docs", "xxx", "escort", "teen", "cam"]
    urls = [f"https://{rng.choice(['', 'www.', 'm.'])}{rng.choice(domains)}/{'-'.join(rng.sample(words, 3))}" for _ in range(1500)]
    reference = DatatroveURLFilter()
    theirs = []
    for url in urls:
        result = reference.filter(DatatroveDocument(text="", id="x", metadata={"url": url}))
        theirs.append(None if result is True else f"adult:{result[1]}")
    assert URLFilter(["adult"]).filter_urls(urls) == theirs
    assert len(set(theirs)) >= 4  # domain, hard, soft and kept all occur


def test_url_list_is_compared_as_ut1_writes_it():
    f = URLFilter([CategoryLists.of("adult", urls=["https://www.Example.com/bad/page.html", "example.com/q?id=3"])])
    assert f.reason("https://example.com/bad/page.html") == "adult:url"
    assert f.reason("http://www.example.com/bad/page.html?utm=1") == "adult:url"
    assert f.reason("https://EXAMPLE.com/bad/page.html#top") == "adult:url"
    assert f.reason("https://example.com/q?id=3") == "adult:url"
    assert f.filter_urls(["https://example.com/bad/page.html2", "https://other.example.com/bad/page.html",
                          "https://example.com/q?id=4"]) == [None] * 3  # fmt: skip


def test_words_soft_threshold_and_subwords():
    lists = CategoryLists.of("test", banned_words=["frob"], soft_banned_words=["alpha", "beta", "gamma"], banned_subwords=["zorgle"])
    f = URLFilter([lists])
    assert f.reason("https://a.com/how-to-FROB") == "test:hard_blacklisted"
    assert f.reason("https://a.com/frobnicate") is None  # a whole word, not a prefix
    assert f.reason("https://a.com/alpha_beta") == "test:soft_blacklisted"  # "_" separates words, as in datatrove
    assert f.reason("https://a.com/alpha-alpha") is None  # distinct words are counted
    assert f.reason("https://mega.zor-gle.com/") == "test:blacklisted_subword"  # across punctuation
    three = URLFilter([lists], soft_word_threshold=3)
    assert three.reason("https://a.com/alpha-beta") is None and three.reason("https://a.com/alpha-beta-gamma") is not None
    with pytest.raises(ValueError, match="soft_word_threshold"):
        URLFilter([lists], soft_word_threshold=0)


def test_check_order_is_by_kind_then_by_category():
    first = CategoryLists.of("first", banned_words=["bad"], soft_banned_words=["s1", "s2"], banned_subwords=["zzz"])
    second = CategoryLists.of("second", domains=["x.com"], banned_words=["bad"])
    f = URLFilter([first, second])
    assert f.reason("https://x.com/bad/s1-s2-zzz") == "second:domain"  # a domain beats any word of any category
    assert f.reason("https://y.com/bad/s1-s2-zzz") == "first:hard_blacklisted"  # same kind: the first category
    assert URLFilter([second, first]).reason("https://y.com/bad") == "second:hard_blacklisted"
    assert f.reason("https://y.com/s1-s2-zzz") == "first:soft_blacklisted"
    assert f.reason("https://y.com/s1-zzz") == "first:blacklisted_subword"
    with pytest.raises(ValueError, match="twice"):
        URLFilter([first, first])


def test_default_categories_and_their_reasons(uf):
    assert uf.category_names == list(DEFAULT_CATEGORIES)
    assert uf.filter_urls([
        "https://www.bet365.com/#/AS/B1/", "https://bestonlinecasino.net/", "https://x.com/roulette/tips",
        "https://coinhive.com/lib/miner.js", "https://softs.net/photoshop-keygen", "https://wallet-connect-sync.app/",
        "https://x.org/secure/login/verify",
    ]) == [
        "gambling:domain", "gambling:blacklisted_subword", "gambling:hard_blacklisted", "malware:domain",
        "malware:hard_blacklisted", "phishing:blacklisted_subword", "phishing:soft_blacklisted",
    ]  # fmt: skip


def test_shipped_lists_are_packaged_with_headers():
    root = files("pipeline") / "data" / "url_blocklist"
    for category in ("gambling", "malware", "phishing"):
        for kind in ("domains", "banned_words", "banned_subwords", "soft_banned_words"):
            assert (root / category / f"{kind}.txt").read_text(encoding="utf-8").startswith("# "), (category, kind)
    gambling = load_category("gambling")
    assert len(gambling.domains) >= 80 and "sportsbook" in gambling.banned_words
    innocent = ["middlesex", "alphabet", "slothful", "betty", "crackers", "nutcracker", "metamask", "airdropped"]
    for c in ("gambling", "malware", "phishing"):
        assert not [(w, s) for s in load_category(c).banned_subwords for w in innocent if s in w], c


def test_adult_is_datatroves_lists():
    adult = datatrove_adult()
    assert adult.domains.entries > 4_000_000 and adult.domains.source.startswith("datatrove/assets/")
    assert {"porn", "xxx"} <= adult.banned_words and {"sexy", "nude", "escort"} <= adult.soft_banned_words
    assert "2girls1cup" in adult.banned_subwords  # normalised as datatrove does
    assert adult.domains.entries == len(adult.domains)  # no two entries share a hash
    assert isinstance(adult.domains.hashes.base, np.memmap)  # read from the cache folder, not held in memory
    assert np.all(adult.domains.hashes[1:] > adult.domains.hashes[:-1])  # sorted and unique, for the lookups


def test_unknown_or_listless_categories_fail_naming_them(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        load_category("nope")
    with pytest.raises(FileNotFoundError, match="'dating'"):
        load_category("dating")
    with pytest.raises(FileNotFoundError, match="dating/domains"):
        load_category("dating", lists=str(tmp_path))


def _ut1_folder(root: Path) -> Path:
    (root / "gambling").mkdir(parents=True)
    (root / "gambling" / "domains").write_text("casino-spam.com\nwww.Other-Bets.net\n")
    (root / "gambling" / "urls").write_text("innocent.com/one/bad/page.html\n")
    (root / "dating").mkdir()
    (root / "dating" / "domains").write_text("meet-singles.com\n")
    (root / "dating" / "usage").write_text("black\n")  # UT1 ships this too; it is not a list
    return root


def test_ut1_folder_adds_to_a_category_and_brings_new_ones(tmp_path):
    lists = str(_ut1_folder(tmp_path / "ut1"))
    f = URLFilter(["gambling", "dating"], lists=lists, cache_dir=str(tmp_path / "cache"))
    assert f.filter_urls([
        "https://casino-spam.com/", "https://www.other-bets.net/", "https://innocent.com/one/bad/page.html",
        "https://innocent.com/two.html", "https://meet-singles.com/x", "https://www.bet365.com/",
    ]) == ["gambling:domain", "gambling:subdomain", "gambling:url", None, "dating:domain", "gambling:domain"]  # fmt: skip
    assert f.describe()["categories"]["gambling"]["domains"]["source"].endswith("+" + lists + "/gambling/domains")


def test_cache_is_reused_and_follows_the_file(tmp_path):
    lists, cache = _ut1_folder(tmp_path / "ut1"), tmp_path / "cache"
    first = from_ut1_folder(str(lists), "gambling", cache_dir=str(cache))
    assert len(list(cache.glob("*.npy"))) == 2 and first.domains.entries == 2
    again = from_ut1_folder(str(lists), "gambling", cache_dir=str(cache))
    assert again.domains.key == first.domains.key and np.array_equal(again.domains.hashes, first.domains.hashes)
    time.sleep(0.01)
    (lists / "gambling" / "domains").write_text("casino-spam.com\nwww.other-bets.net\nthird.com\n")
    changed = from_ut1_folder(str(lists), "gambling", cache_dir=str(cache))
    assert changed.domains.key != first.domains.key and changed.domains.entries == 3


def test_hashed_list_lookup_matches_isin_small_and_big():
    rng = np.random.default_rng(0)
    for size in (10, 200_000):  # a binary search, and the bucketed one of big lists
        values = rng.integers(0, 2**63, size, dtype=np.int64).astype(np.uint64) * np.uint64(2)
        listed = HashedList(np.sort(values), size, "t")
        queries = np.concatenate([values[rng.integers(0, size, 500)], values[:50] + np.uint64(1), np.array([0, 2**64 - 1], dtype=np.uint64)])
        assert np.array_equal(listed.contains(queries), np.isin(queries, values))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_s3(monkeypatch):
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)  # moto accepts any credentials; they come from the environment, as in production
    yield {"endpoint_url": f"http://127.0.0.1:{port}"}
    server.terminate()
    server.wait(timeout=10)


def test_ut1_lists_from_an_s3_prefix(tmp_path, moto_s3):
    import s3fs

    fs = s3fs.S3FileSystem(**moto_s3)
    fs.mkdir("lists")
    fs.put(str(_ut1_folder(tmp_path / "ut1")), "lists/ut1", recursive=True)
    f = URLFilter(["gambling", "dating"], lists="s3://lists/ut1", storage_options=moto_s3, cache_dir=str(tmp_path / "cache"))
    assert f.filter_urls(["https://casino-spam.com/", "https://meet-singles.com/", "https://innocent.com/one/bad/page.html"]) == [
        "gambling:domain", "dating:domain", "gambling:url",
    ]  # fmt: skip
    assert f.describe()["categories"]["dating"]["domains"]["source"] == "s3://lists/ut1/dating/domains"


def test_heldout_phishing_malware_and_clean_sites(uf):
    """Sites the lists were not made from (scripts/build_url_heldout.py says where they come from). The floors are
    today's rates: the shipped phishing and malware lists are words only; UT1's lists (url_lists) are the real cover."""
    df = pl.read_csv(HELDOUT, separator="\t", comment_prefix="#", quote_char=None)
    df = df.with_columns(reason=uf.reasons(df["url"]))
    rate = dict(df.group_by("category").agg(pl.col("reason").is_not_null().mean()).iter_rows())
    assert rate["malware"] >= 0.03 and rate["phishing"] >= 0.01
    clean_dropped = df.filter(pl.col("category") == "clean", pl.col("reason").is_not_null())
    assert clean_dropped["url"].to_list() == ["https://www.pornhub.com/", "https://www.xvideos.com/"]  # in the top 50


def test_filter_protocol_and_describe(uf):
    urls = [u for u, r in PLANTED if r] + SURVIVORS
    df = pl.DataFrame({"text": ["t"] * len(urls), "id": [str(i) for i in range(len(urls))], "url": urls})
    kept, dropped = apply_filters(df, [uf], stage="url_filtered")
    assert kept["url"].to_list() == SURVIVORS
    assert dropped["reason"].to_list() == [f"url:{r}" for _, r in PLANTED if r]
    described = uf.describe()
    assert list(described["categories"]) == list(DEFAULT_CATEGORIES) and described["soft_word_threshold"] == 2
    json.dumps(described)  # goes into the stage's recorded config


def test_pipeline_config_names_a_bad_category():
    from pydantic import ValidationError

    from assets_defs.resources import PipelineConfig

    assert PipelineConfig().url_categories == list(DEFAULT_CATEGORIES)
    with pytest.raises(ValidationError, match="url_categories"):
        PipelineConfig(url_categories=["adult", "nope"])
