"""URL filter by category, FineWeb's (datatrove's `URLFilter`) for adult: drops a page by its URL before any text
is extracted. The lists of each category, and where they come from, are in pipeline/url_lists.py.

A URL gets the first of these reasons that applies, or None (kept). The checks run in datatrove's order and, within
a check, in the order the categories are given; a reason names its category, as "adult:domain":

- "invalid_url": no "scheme://" with a host ("not a url", "", None; datatrove would fail on an empty URL);
- "{category}:domain": the host's registered domain is listed ("de.pornhub.com" -> "pornhub.com"; the public suffix
  list decides it: "a.b.co.uk" -> "b.co.uk"); "{category}:subdomain": the whole host is listed. Exactly datatrove's
  two checks with tldextract's public suffix list (pipeline/public_suffix.py), so a listed "b.example.com" blocks
  "b.example.com" but not "a.b.example.com", "www.x.com" is not "x.com", and a host with no public suffix
  ("blocked.test", an IP address) is never blocked by domain;
- "{category}:url": the URL is listed, compared as UT1 writes its entries (no scheme, "www.", fragment or trailing
  "/"), and again without its query string (datatrove compares the raw URL, which UT1's scheme-less entries never
  equal);
- "{category}:hard_blacklisted": a banned word is one of the URL's words (split on non-alphanumerics);
- "{category}:soft_blacklisted": at least `soft_word_threshold` (FineWeb: 2) distinct soft words are among them;
- "{category}:blacklisted_subword": a banned subword occurs in the URL with every non-alphanumeric removed.

The URL is lowercased first (datatrove is case-sensitive: it keeps "https://WWW.PORNHUB.COM/", and its word checks
miss "XXX"); on lowercase URLs, which is what crawls hold, its keep/drop decisions on adult and ours are the same
(bench/bench_url_filter.py checks it), and on others ours are a superset.

The work is done a batch at a time in polars and numpy, never a Python loop over URLs: each host's registered
domain is found by a vectorised walk of the public suffix list, then it and the host are looked up, as 64-bit
hashes, in each category's sorted hash array; words are whole-word regexes over the URL with its non-alphanumerics
made spaces, subwords one regex of literals over it with them removed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from pipeline.documents import Document
from pipeline.public_suffix import public_suffixes
from pipeline.url_lists import DEFAULT_CATEGORIES, CategoryLists, hash_strings, load_category, url_key

_SCHEME = r"^(?:[a-z0-9+.\-]+:)?//"  # tldextract's lenient rule: "//" after scheme characters and a colon, or first
_UNICODE_DOTS = ("\u3002", "\uff0e", "\uff61")
KINDS = ("domain", "subdomain", "url", "hard_blacklisted", "soft_blacklisted", "blacklisted_subword")


def _before(s: pl.Series, sep: str) -> pl.Series:
    return s.str.splitn(sep, 2).struct.field("field_0")


def hosts(urls: pl.Series) -> pl.Series:
    """The host of each lowercased URL as tldextract reads it (no userinfo, port or trailing dot); "" if none."""
    authority = _before(_before(_before(urls.str.replace(_SCHEME, ""), "/"), "?"), "#")
    if authority.str.contains("@", literal=True).any():
        authority = authority.str.replace(r"^.*@", "")
    host = authority.str.replace(r":.*", "")
    if authority.str.starts_with("[").any():  # an IPv6 literal keeps its colons
        bracketed = authority.str.extract(r"^(\[[^\]]*\])", 1)
        host = pl.select(pl.when(bracketed.is_not_null()).then(bracketed).otherwise(host)).to_series()
    host = host.str.strip_chars().str.strip_chars_end("." + "".join(_UNICODE_DOTS))
    for dot in _UNICODE_DOTS:
        if host.str.contains(dot, literal=True).any():
            host = host.str.replace_all(dot, ".", literal=True)
    return pl.select(pl.when(urls.str.contains(_SCHEME)).then(host).otherwise(pl.lit(""))).to_series().fill_null("")


def _word_pattern(words: frozenset[str]) -> str | None:
    """A regex for any of `words` as a whole word of a URL whose non-alphanumerics are spaces (so \\b is exact)."""
    return r"\b(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + r")\b" if words else None


class URLFilter:
    """Drops documents by `metadata["url"]`; see the module docstring for the reasons."""

    name = "url"

    def __init__(
        self,
        categories: Sequence[str | CategoryLists] = DEFAULT_CATEGORIES,
        *,
        lists: str | None = None,
        soft_word_threshold: int = 2,
        storage_options: dict | None = None,
        cache_dir: str | None = None,
    ):
        """`categories`: names (their shipped lists plus `{lists}/{name}/`, see url_lists.load_category) or lists
        made in code (`CategoryLists.of`), in the order their reasons win."""
        if soft_word_threshold < 1:
            raise ValueError(f"soft_word_threshold must be >= 1, got {soft_word_threshold}")
        if not categories:
            raise ValueError("URLFilter needs at least one category")
        self.categories = [
            c if isinstance(c, CategoryLists) else load_category(c, lists, storage_options, cache_dir)
            for c in categories
        ]
        names = self.category_names
        if len(set(names)) != len(names):
            raise ValueError(f"a category is given twice: {names}")
        self.soft_word_threshold = soft_word_threshold
        self._hard = [_word_pattern(c.banned_words) for c in self.categories]
        self._soft = [_word_pattern(c.soft_banned_words) for c in self.categories]
        # one regex of literals: Rust's regex runs it as a multi-pattern (Teddy/Aho-Corasick) search, 5x faster here
        # than polars' str.contains_any
        self._subwords = ["|".join(map(re.escape, sorted(c.banned_subwords))) or None for c in self.categories]
        self._labels = np.array([f"{c}:{kind}" for kind in KINDS for c in names] + ["invalid_url", None], dtype=object)

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def describe(self) -> dict:
        """Per category: list sizes, sources and cache keys; for a stage's recorded config."""
        return {
            "categories": {c.name: c.describe() for c in self.categories},
            "soft_word_threshold": self.soft_word_threshold,
        }

    def reasons(self, urls: pl.Series | Iterable[str | None]) -> pl.Series:
        """The drop reason of each URL, null where it is kept."""
        raw = urls if isinstance(urls, pl.Series) else pl.Series(list(urls), dtype=pl.String)
        u = raw.cast(pl.String).fill_null("").str.strip_chars().str.to_lowercase()
        host = hosts(u)
        valid = (host != "").to_numpy()
        # code = kind * categories + category; the last label is None (kept), the one before it "invalid_url"
        code = np.full(len(u), len(self._labels) - 2, dtype=np.int64)
        u, host = u.filter(valid), host.filter(valid)
        ours = np.full(len(u), len(self._labels) - 1, dtype=np.int64)
        decided = np.zeros(len(u), dtype=bool)
        spaced = functools.cache(lambda: u.str.replace_all(r"[^a-z0-9]+", " "))  # datatrove's word split
        domain = functools.cache(lambda: self._domain_categories(host))
        checks = (  # in KINDS order, each run only while some URL is undecided
            lambda: domain()[0], lambda: domain()[1], lambda: self._url_categories(u),
            lambda: self._hard_categories(spaced()),
            lambda: self._soft_categories(spaced()), lambda: self._subword_categories(spaced()),
        )  # fmt: skip
        for kind, first_category in enumerate(checks):
            if decided.all():
                break
            found = first_category()
            hit = ~decided & (found >= 0)
            ours[hit] = kind * len(self.categories) + found[hit]
            decided |= hit
        code[valid] = ours
        return pl.Series("reason", self._labels[code].tolist(), dtype=pl.String)

    def _domain_categories(self, host: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(first category listing the host's registered domain, first listing the whole host) per host, -1 for
        none; as datatrove's two checks, both only for a host with a registered domain."""
        unique = host.unique()
        registered, level = public_suffixes().registered_domains(unique)
        has = level > 0
        whole = hash_strings(unique)
        domain = self._first_category((has & c.domains.contains(registered) for c in self.categories), len(unique))
        subdomain = self._first_category((has & c.domains.contains(whole) for c in self.categories), len(unique))
        table = pl.DataFrame({"host": unique, "domain": domain, "subdomain": subdomain})
        rows = host.to_frame("host").join(table, on="host", how="left", maintain_order="left")
        return rows["domain"].to_numpy(), rows["subdomain"].to_numpy()

    def _first_category(self, masks: Iterable[np.ndarray], n: int) -> np.ndarray:
        """Index of the first category whose mask is True, -1 where none is."""
        first = np.full(n, -1, dtype=np.int64)
        for i, mask in reversed(list(enumerate(masks))):
            first[mask] = i
        return first

    def _url_categories(self, u: pl.Series) -> np.ndarray:
        if not any(len(c.urls) for c in self.categories):
            return np.full(len(u), -1, dtype=np.int64)
        key = url_key(u)
        whole, path = hash_strings(key), hash_strings(_before(key, "?").str.strip_chars_end("/"))
        return self._first_category((c.urls.contains(whole) | c.urls.contains(path) for c in self.categories), len(u))

    def _hard_categories(self, spaced: pl.Series) -> np.ndarray:
        masks = (spaced.str.contains(p).to_numpy() if p else np.zeros(len(spaced), dtype=bool) for p in self._hard)
        return self._first_category(masks, len(spaced))

    def _soft_categories(self, spaced: pl.Series) -> np.ndarray:
        """First category with at least `soft_word_threshold` distinct soft words among the URL's words."""
        masks = (
            (spaced.str.extract_all(p).list.n_unique() >= self.soft_word_threshold).to_numpy()
            if p else np.zeros(len(spaced), dtype=bool)
            for p in self._soft
        )  # fmt: skip
        return self._first_category(masks, len(spaced))

    def _subword_categories(self, spaced: pl.Series) -> np.ndarray:
        squashed = spaced.str.replace_all(" ", "", literal=True)
        none = np.zeros(len(spaced), dtype=bool)
        masks = (squashed.str.contains(p).to_numpy() if p else none for p in self._subwords)
        return self._first_category(masks, len(spaced))

    def reason(self, url: str | None) -> str | None:
        """Why `url` is dropped, or None if it is kept."""
        return self.reasons([url])[0]

    def filter_urls(self, urls: Iterable[str | None]) -> list[str | None]:
        """The drop reason, or None to keep, for each URL in order."""
        return self.reasons(urls).to_list()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.reason(doc.metadata.get("url"))
        return True if reason is None else (False, reason)
