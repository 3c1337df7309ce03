"""URL filter after FineWeb's (datatrove's `URLFilter`): drops a page by its URL, before any text is extracted.

A URL gets the first of these reasons that applies, checked in datatrove's order, or None (kept):

- "invalid_url": it has no host ("not a url", "", None);
- "domain": its host or a parent domain of it is blocklisted. The host is lowercased, without port, userinfo or a
  leading "www."; "https://WWW.A.B.Example.com:8080/x" checks a.b.example.com, b.example.com and example.com;
- "url": the URL itself is blocklisted, compared lowercased without scheme, "www.", fragment and trailing "/",
  and again without its query string;
- "hard_blacklisted": a banned word is one of the URL's words (the lowercased URL split on non-alphanumerics);
- "soft_blacklisted": at least `soft_word_threshold` (default 2) distinct soft-banned words are among those words;
- "blacklisted_subword": a banned subword occurs in the lowercased URL with every non-alphanumeric removed. All
  subwords are compiled into one trie-shaped regex: per URL, a host regex, a few set lookups and one search.

The shipped lists, pipeline/data/url_blocklist/{domains,urls,banned_words,banned_subwords,soft_banned_words}.txt,
are small and hand-curated after FineWeb's categories: one entry per line, "#" starts a comment. FineWeb blocks
the "adult" category of the UT1 blocklist (https://dsi.ut-capitole.fr/blacklists/), several million domains,
which this offline pipeline cannot download at run time. To use it, download it once and point the filter at it;
its files have the same one-entry-per-line format:

    wget https://dsi.ut-capitole.fr/blacklists/download/adult.tar.gz && tar xzf adult.tar.gz
    URLFilter.from_dir("adult")        # reads adult/domains and adult/urls; the word lists stay the shipped ones
    URLFilter.from_files(domains="adult/domains", urls=["adult/urls", "my_urls.txt"])

Without code changes: set the pipeline's `url_blocklist_dir` setting to that folder (the stage calls
`URLFilter.from_config(list_dir=...)`, which is `from_dir`). A file given replaces the shipped list of its kind
(`add_to_shipped=True` adds to it instead); kinds not given keep the shipped list. `URLFilter(extra_domains=...)`
and the other `extra_*`/word arguments add entries in code.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from importlib.resources import files

from pipeline.documents import Document

KINDS = ("domains", "urls", "banned_words", "banned_subwords", "soft_banned_words")
PathArg = str | os.PathLike | Iterable[str | os.PathLike] | None

_HOST = re.compile(r"(?:[a-z][a-z0-9+.\-]*:)?//(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]*)")
_SCHEME = re.compile(r"(?:[a-z][a-z0-9+.\-]*:)?//")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _domain_key(host: str) -> str:
    host = host.strip().strip(".").lower()
    return host[4:] if host.startswith("www.") else host


def _url_key(url: str) -> str:
    key = url.strip().lower()
    m = _SCHEME.match(key)
    key = (key[m.end() :] if m else key).split("#", 1)[0]
    return (key[4:] if key.startswith("www.") else key).rstrip("/")


def _word_key(word: str) -> str:
    return _NON_ALNUM.sub("", word.lower())


_KEYS = {"domains": _domain_key, "urls": _url_key} | {k: _word_key for k in KINDS[2:]}


def parse_list(lines: Iterable[str], kind: str) -> set[str]:
    """Entries of one list, normalized for `kind`: blank lines, "# ..." lines and " # ..." tails are skipped."""
    key, out = _KEYS[kind], set()
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and (entry := key(line)):
            out.add(entry)
    return out


def read_list(path: str | os.PathLike, kind: str) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_list(f, kind)


@lru_cache(maxsize=None)
def shipped_list(kind: str) -> frozenset[str]:
    """The list shipped in pipeline/data/url_blocklist/{kind}.txt (empty if there is none)."""
    resource = files("pipeline") / "data" / "url_blocklist" / f"{kind}.txt"
    text = resource.read_text(encoding="utf-8") if resource.is_file() else ""
    return frozenset(parse_list(text.splitlines(), kind))


def _trie_regex(words: Iterable[str]) -> re.Pattern | None:
    """One regex matching wherever any of `words` occurs, shaped as a trie: r"p(?:orn|ussy)", not r"porn|pussy"."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        if "" in node:  # a word ends here: for `search`, longer words through this node add nothing
            return ""
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(build(trie)) if trie else None


class URLFilter:
    """Drops documents by `metadata["url"]`; see the module docstring for the reasons and the lists."""

    name = "url"
    domains: frozenset[str]
    urls: frozenset[str]
    banned_words: frozenset[str]
    banned_subwords: frozenset[str]
    soft_banned_words: frozenset[str]

    def __init__(
        self,
        *,
        extra_domains: Iterable[str] | None = None,
        extra_urls: Iterable[str] | None = None,
        banned_words: Iterable[str] | None = None,
        banned_subwords: Iterable[str] | None = None,
        soft_banned_words: Iterable[str] | None = None,
        soft_word_threshold: int = 2,
        use_shipped_lists: bool = True,
    ):
        if soft_word_threshold < 1:
            raise ValueError(f"soft_word_threshold must be >= 1, got {soft_word_threshold}")
        extras = (extra_domains, extra_urls, banned_words, banned_subwords, soft_banned_words)
        self.sources: dict[str, str] = {}  # where each list came from, for describe()
        for kind, extra in zip(KINDS, extras):  # sets self.domains, self.urls, self.banned_words, ...
            shipped = shipped_list(kind) if use_shipped_lists else frozenset()
            added = parse_list([extra] if isinstance(extra, str) else extra or (), kind)
            setattr(self, kind, shipped | added)
            self.sources[kind] = "+".join(["shipped"] * use_shipped_lists + ["extra"] * bool(added)) or "none"
        self.soft_word_threshold = soft_word_threshold
        self._subword_re = _trie_regex(self.banned_subwords)

    @classmethod
    def from_files(
        cls,
        *,
        domains: PathArg = None,
        urls: PathArg = None,
        banned_words: PathArg = None,
        banned_subwords: PathArg = None,
        soft_banned_words: PathArg = None,
        soft_word_threshold: int = 2,
        add_to_shipped: bool = False,
    ) -> URLFilter:
        """Lists read from files (one path or several per kind): each replaces the shipped list of its kind, or
        adds to it with `add_to_shipped=True`; kinds given no file keep the shipped list."""
        lists, sources = [], {}
        for kind, arg in zip(KINDS, (domains, urls, banned_words, banned_subwords, soft_banned_words)):
            paths = [os.fspath(a) for a in ([arg] if isinstance(arg, (str, os.PathLike)) else arg or ())]
            entries = set(shipped_list(kind)) if add_to_shipped or not paths else set()
            for path in paths:
                entries |= read_list(path, kind)
            lists.append(entries)
            sources[kind] = "+".join((["shipped"] if add_to_shipped or not paths else []) + paths)
        names = ("extra_domains", "extra_urls", "banned_words", "banned_subwords", "soft_banned_words")
        made = cls(**dict(zip(names, lists)), soft_word_threshold=soft_word_threshold, use_shipped_lists=False)
        made.sources = sources
        return made

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, **kwargs) -> URLFilter:
        """Reads whichever of `{kind}` or `{kind}.txt` exist in `directory` (UT1's adult/ has domains and urls)."""
        found = {}
        for kind in KINDS:
            for name in (kind, f"{kind}.txt"):
                if os.path.isfile(path := os.path.join(directory, name)):
                    found.setdefault(kind, []).append(path)
        if not found:
            raise FileNotFoundError(f"no blocklist files ({', '.join(KINDS)}) in {directory}")
        return cls.from_files(**found, **kwargs)

    @classmethod
    def from_config(cls, list_dir: str | os.PathLike | None = None, soft_word_threshold: int = 2) -> URLFilter:
        """The shipped lists, or those in `list_dir` (see `from_dir`) where one is given."""
        if list_dir is None:
            return cls(soft_word_threshold=soft_word_threshold)
        return cls.from_dir(list_dir, soft_word_threshold=soft_word_threshold)

    def describe(self) -> dict[str, dict]:
        """Per list: where it came from, its size and a digest of its entries, for a stage's recorded config."""
        out = {}
        for kind in KINDS:
            entries = sorted(getattr(self, kind))
            digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
            out[kind] = {"source": self.sources[kind], "entries": len(entries), "sha256_16": digest}
        return out

    def _domain_blocked(self, host: str) -> bool:
        if host in self.domains:
            return True
        if host[-1].isdigit() or host[0] == "[":  # an IP address has no parent domains
            return False
        while (i := host.find(".")) >= 0 and host.find(".", i + 1) >= 0:  # stop before the bare TLD
            host = host[i + 1 :]
            if host in self.domains:
                return True
        return False

    def reason(self, url: str | None) -> str | None:
        """Why `url` is dropped, or None if it is kept."""
        url = (url or "").strip().lower()
        m = _HOST.match(url)
        host = _domain_key(m.group(1)) if m else ""
        if not host:
            return "invalid_url"
        if self._domain_blocked(host):
            return "domain"
        if self.urls:
            key = _url_key(url)
            if key in self.urls or key.split("?", 1)[0].rstrip("/") in self.urls:
                return "url"
        words = set(_NON_ALNUM.split(url))
        if not words.isdisjoint(self.banned_words):
            return "hard_blacklisted"
        if len(words & self.soft_banned_words) >= self.soft_word_threshold:
            return "soft_blacklisted"
        if self._subword_re is not None and self._subword_re.search(_NON_ALNUM.sub("", url)):
            return "blacklisted_subword"
        return None

    def filter_urls(self, urls: Iterable[str | None]) -> list[str | None]:
        """The drop reason, or None to keep, for each URL in order."""
        reason = self.reason
        return [reason(u) for u in urls]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.reason(doc.metadata.get("url"))
        return True if reason is None else (False, reason)
