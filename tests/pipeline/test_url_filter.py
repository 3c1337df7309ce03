import json
import random
from importlib.resources import files

import polars as pl
import pytest

from pipeline.documents import Document
from pipeline.filters.base import apply_filters
from pipeline.url_filter import KINDS, URLFilter, _trie_regex, shipped_list


@pytest.fixture(scope="module")
def uf() -> URLFilter:
    return URLFilter()


# The URLs the sample crawl plants, and the reason each must be dropped with.
PLANTED = [
    ("https://www.pornhub.com/view_video.php?viewkey=ph5f3a", "domain"),
    ("https://cheap-deals.example.com/xxx/free-clips.html", "hard_blacklisted"),
    ("https://www.bestpornsite.example.org/index.html", "blacklisted_subword"),
    ("https://dating.example.net/sexy-nude-escort-girls.html", "soft_blacklisted"),
]
SURVIVORS = [
    "https://debian-handbook.info/browse/en-US/stable/sect.apt-get.html",
    "https://docs.python.org/3.11/library/sqlite3.html",
    "https://www.middlesex.gov.uk/essex-sussex-news",
    "https://en.wikipedia.org/wiki/Hot_spring",  # one soft word only
]


@pytest.mark.parametrize("url,reason", PLANTED)
def test_planted_urls_are_dropped_with_their_reason(uf, url, reason):
    assert uf.reason(url) == reason
    assert uf.filter(Document(text="", id="x", metadata={"url": url})) == (False, reason)


@pytest.mark.parametrize("url", SURVIVORS)
def test_innocent_urls_survive(uf, url):
    assert uf.reason(url) is None
    assert uf.filter(Document(text="", id="x", metadata={"url": url})) is True


def test_filter_urls_matches_reason_in_order(uf):
    urls = [u for u, _ in PLANTED] + SURVIVORS + ["not a url"]
    assert uf.filter_urls(urls) == [r for _, r in PLANTED] + [None] * len(SURVIVORS) + ["invalid_url"]
    assert uf.filter_urls([]) == []


def test_shipped_lists_are_packaged_with_headers_and_required_entries():
    root = files("pipeline") / "data" / "url_blocklist"
    for kind in KINDS:
        text = (root / f"{kind}.txt").read_text(encoding="utf-8")
        assert text.startswith("#")
        assert "hand-curated" in text.lower() and "ut1" in text.lower()
    assert {"pornhub.com", "xvideos.com", "xhamster.com", "xnxx.com", "onlyfans.com"} <= shipped_list("domains")
    assert len(shipped_list("domains")) >= 200
    assert "xxx" in shipped_list("banned_words")
    assert "porn" in shipped_list("banned_subwords")
    assert {"sexy", "nude", "escort"} <= shipped_list("soft_banned_words")
    assert not {"#", ""} & set().union(*(shipped_list(k) for k in KINDS))  # comments and blanks are skipped


def test_shipped_subwords_do_not_hit_innocent_words():
    subwords = shipped_list("banned_subwords")
    assert "sex" not in subwords and all(len(w) >= 4 for w in subwords)
    innocent = ["middlesex", "essex", "sussex", "wessex", "milford", "petits", "analysis", "document", "scunthorpe"]
    assert not [(s, w) for s in innocent for w in subwords if w in s]


def test_subdomains_of_blocked_domains_are_dropped():
    f = URLFilter(extra_domains=["blocked.test"], use_shipped_lists=False)
    assert f.reason("https://blocked.test/") == "domain"
    assert f.reason("https://a.b.blocked.test/page") == "domain"
    assert f.reason("https://notblocked.test/") is None  # not a parent domain, just a longer name
    assert f.reason("https://blocked.test.example.org/") is None
    assert URLFilter().reason("https://de.pornhub.com/categories") == "domain"
    assert URLFilter().reason("https://fr.m.xhamster.com/videos") == "domain"


def test_port_uppercase_userinfo_and_www_are_normalized(uf):
    assert uf.reason("HTTPS://WWW.XVIDEOS.COM:8080/Video123/") == "domain"
    assert uf.reason("http://user:secret@xhamster.com:443/") == "domain"
    assert uf.reason("https://xhamster.com./") == "domain"  # fully qualified, trailing dot
    assert uf.reason("https://cheap-deals.example.com/XXX/free-clips.html") == "hard_blacklisted"
    assert uf.reason("https://example.org/Sexy/NUDE") == "soft_blacklisted"
    assert uf.reason("https://example.org:8443/index.html") is None
    f = URLFilter(extra_domains=["WWW.Blocked.Test"], use_shipped_lists=False)
    assert f.reason("https://blocked.test:8080/") == "domain"


@pytest.mark.parametrize("url", ["not a url", "", None, "   ", "mailto:someone@example.org", "https:///path-only"])
def test_urls_without_host_are_dropped_as_invalid_and_do_not_crash(uf, url):
    assert uf.reason(url) == "invalid_url"


def test_document_without_url_is_dropped_as_invalid(uf):
    assert uf.filter(Document(text="t", id="x", metadata={})) == (False, "invalid_url")


def test_ip_hosts_are_checked_exactly_without_parent_domains():
    f = URLFilter(extra_domains=["10.0.0.7", "0.0.7"], use_shipped_lists=False)
    assert f.reason("http://10.0.0.7:8000/") == "domain"
    assert f.reason("http://11.0.0.7/") is None
    assert f.reason("http://[::1]:80/") is None


def test_full_url_blocklist():
    f = URLFilter(extra_urls=["https://www.Example.com/bad/page.html"], use_shipped_lists=False)
    assert f.reason("https://example.com/bad/page.html") == "url"
    assert f.reason("http://www.example.com/bad/page.html?utm=1") == "url"
    assert f.reason("https://EXAMPLE.com/bad/page.html#top") == "url"
    assert f.reason("https://example.com/bad/page.html2") is None
    assert f.reason("https://example.com/bad/") is None
    assert f.reason("https://other.example.com/bad/page.html") is None
    g = URLFilter(extra_urls=["example.com/q?id=3"], use_shipped_lists=False)  # UT1 style: no scheme
    assert g.reason("https://example.com/q?id=3") == "url"
    assert g.reason("https://example.com/q?id=4") is None


def test_extra_args_add_to_the_shipped_lists():
    f = URLFilter(
        extra_domains=["casino-spam.test"],
        banned_words=["frobnicate"],
        banned_subwords=["zorgle"],
        soft_banned_words=["alpha", "beta"],
    )
    assert f.reason("https://casino-spam.test/") == "domain"
    assert f.reason("https://a.test/how-to-frobnicate") == "hard_blacklisted"
    assert f.reason("https://a.test/frobnicated") is None  # a whole word, not a prefix
    assert f.reason("https://a.test/megazorgleshop") == "blacklisted_subword"
    assert f.reason("https://a.test/alpha-beta") == "soft_blacklisted"
    assert f.reason("https://a.test/alpha-gamma") is None
    assert f.reason("https://www.pornhub.com/") == "domain"  # shipped lists still apply
    assert f.reason("https://a.test/sexy-alpha") == "soft_blacklisted"  # extras join the shipped soft words


def test_without_shipped_lists_only_extras_apply():
    f = URLFilter(use_shipped_lists=False)
    assert [f.reason(u) for u, _ in PLANTED] == [None] * len(PLANTED)
    assert f.reason("not a url") == "invalid_url"


def test_soft_word_threshold():
    url = "https://example.org/hot-girls"
    assert URLFilter().reason(url) == "soft_blacklisted"
    assert URLFilter(soft_word_threshold=3).reason(url) is None
    assert URLFilter(soft_word_threshold=3).reason("https://example.org/hot-sexy-girls") == "soft_blacklisted"
    assert URLFilter().reason("https://example.org/hot-hot-hot") is None  # distinct words are counted
    with pytest.raises(ValueError):
        URLFilter(soft_word_threshold=0)


def test_check_order_follows_datatrove():
    f = URLFilter(extra_domains=["x.test"], use_shipped_lists=False, banned_words=["bad"],
                  soft_banned_words=["s1", "s2"], banned_subwords=["zzz"])  # fmt: skip
    assert f.reason("https://x.test/bad/s1-s2-zzz") == "domain"
    assert f.reason("https://y.test/bad/s1-s2-zzz") == "hard_blacklisted"
    assert f.reason("https://y.test/s1-s2-zzz") == "soft_blacklisted"
    assert f.reason("https://y.test/s1-zzz") == "blacklisted_subword"


def test_from_files_replaces_the_shipped_list_of_each_kind_given(tmp_path):
    domains = tmp_path / "domains"
    domains.write_text("# my list\n\nblocked.test\nwww.Other.test  # inline comment\n")
    more = tmp_path / "more_domains.txt"
    more.write_text("third.test\n")
    words = tmp_path / "words.txt"
    words.write_text("#header\nfrobnicate\n")
    f = URLFilter.from_files(domains=[domains, str(more)], banned_words=words)
    assert f.domains == {"blocked.test", "other.test", "third.test"}
    assert f.banned_words == {"frobnicate"}
    assert f.reason("https://sub.blocked.test/") == "domain"
    assert f.reason("https://other.test/") == "domain"
    assert f.reason("https://third.test/") == "domain"
    assert f.reason("https://www.tube8.com/") is None  # shipped domains replaced
    assert f.reason("https://a.test/xxx/") is None  # shipped banned words replaced
    assert f.reason("https://a.test/frobnicate") == "hard_blacklisted"
    assert f.reason("https://www.bestpornsite.example.org/") == "blacklisted_subword"  # kinds not given: shipped
    assert f.soft_banned_words == shipped_list("soft_banned_words")

    g = URLFilter.from_files(domains=domains, add_to_shipped=True, soft_word_threshold=3)
    assert g.reason("https://blocked.test/") == "domain"
    assert g.reason("https://www.tube8.com/") == "domain"
    assert g.soft_word_threshold == 3


def test_from_dir_reads_a_ut1_style_category(tmp_path):
    adult = tmp_path / "adult"
    adult.mkdir()
    (adult / "domains").write_text("blocked.test\n")
    (adult / "urls").write_text("innocent.test/one/bad/page.html\n")
    (adult / "usage").write_text("black\n")  # UT1 ships this too; it is not a list
    f = URLFilter.from_dir(adult)
    assert f.reason("https://www.blocked.test/") == "domain"
    assert f.reason("https://innocent.test/one/bad/page.html") == "url"
    assert f.reason("https://innocent.test/two.html") is None
    assert f.reason("https://www.tube8.com/") is None  # UT1's domains replace the shipped ones
    assert f.reason("https://cheap-deals.example.com/xxx/free-clips.html") == "hard_blacklisted"  # words stay
    with pytest.raises(FileNotFoundError):
        URLFilter.from_dir(tmp_path / "nothing")


def test_filter_protocol_with_apply_filters(uf):
    urls = [u for u, _ in PLANTED] + SURVIVORS
    df = pl.DataFrame({"text": ["t"] * len(urls), "id": [str(i) for i in range(len(urls))], "url": urls})
    kept, dropped = apply_filters(df, [uf], stage="url_filtered")
    assert kept["url"].to_list() == SURVIVORS
    assert dropped["reason"].to_list() == [f"url:{r}" for _, r in PLANTED]
    assert uf.name == "url"


def test_trie_regex_matches_like_naive_substring_search():
    rng = random.Random(0)
    words = {"".join(rng.choice("abc") for _ in range(rng.randint(1, 5))) for _ in range(40)} | {"a.b", "x+"}
    pattern = _trie_regex(words)
    for _ in range(2000):
        s = "".join(rng.choice("abcx.+") for _ in range(rng.randint(0, 12)))
        assert bool(pattern.search(s)) == any(w in s for w in words), s
    assert _trie_regex([]) is None


def test_from_config_uses_shipped_lists_or_a_list_dir(tmp_path):
    default = URLFilter.from_config(soft_word_threshold=3)
    assert default.domains == shipped_list("domains") and default.soft_word_threshold == 3
    (tmp_path / "domains.txt").write_text("blocked.test\n")
    custom = URLFilter.from_config(list_dir=str(tmp_path))
    assert custom.reason("https://blocked.test/") == "domain"
    assert custom.reason("https://www.tube8.com/") is None


def test_describe_records_sources_sizes_and_digests(tmp_path):
    d = URLFilter().describe()
    assert set(d) == set(KINDS)
    assert d["domains"]["source"] == "shipped" and d["domains"]["entries"] == len(shipped_list("domains"))
    assert URLFilter(extra_domains=["a.test"]).describe()["domains"]["source"] == "shipped+extra"
    empty = URLFilter(use_shipped_lists=False).describe()["urls"]
    assert empty["source"] == "none" and empty["entries"] == 0
    path = tmp_path / "domains"
    path.write_text("blocked.test\n")
    described = URLFilter.from_files(domains=path).describe()
    assert described["domains"]["source"] == str(path) and described["domains"]["entries"] == 1
    assert described["banned_words"]["source"] == "shipped"
    assert described["domains"]["sha256_16"] != d["domains"]["sha256_16"]
    json.dumps(d)  # goes into a stage's recorded config
