"""The URL filter's lists, one set a category: where they come from, how they are read, and their disk cache.

A category ("adult", "gambling", ...) has five lists, in UT1's and datatrove's formats (one entry a line, "#" starts
a comment line): `domains` and `urls` (UT1: https://dsi.ut-capitole.fr/blacklists/), and `banned_words`,
`banned_subwords`, `soft_banned_words` (datatrove's, FineWeb's). Where each comes from:

- adult: FineWeb's lists exactly. UT1's adult `domains` (4.6M) and `urls` are read from the tarball that datatrove's
  wheel ships (datatrove/assets/url_filterblacklistsv0_3_0.tar.gz, through importlib.resources: no copy here), and
  the three word lists from the same folder of datatrove's.
- gambling, malware, phishing: small hand-curated lists shipped in pipeline/data/url_blocklist/{category}/ (their
  headers say how they were chosen). No real list of these ships in a PyPI package, and UT1's are downloads.
- any UT1 category (`UT1_CATEGORIES`): a folder or s3:// prefix in UT1's layout, `{lists}/{category}/domains` and
  `{lists}/{category}/urls` (`wget .../blacklists/download/gambling.tar.gz && tar xzf gambling.tar.gz`), adds its
  entries to what ships for that category. A category with nothing shipped needs such a folder.

Millions of Python strings take hundreds of MB, so `domains` and `urls` are kept as a sorted array of 64-bit hashes
of the normalised entries (8 bytes an entry, 36 MB for UT1 adult), written once to a cache folder under a key made
from the list's identity (the tarball's sha256; a folder file's path, size and mtime or ETag) and the hash function's
version, then memory-mapped: a warm load reads no list at all. Two distinct entries whose hashes collide cost
nothing; a URL whose hash collides with an entry's is dropped wrongly, with probability entries / 2**64 a lookup
(2.5e-13 for UT1 adult, a few lookups a URL).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.resources import files

import fsspec
import numpy as np
import polars as pl

WORD_KINDS = ("banned_words", "banned_subwords", "soft_banned_words")
DEFAULT_CATEGORIES = ("adult", "gambling", "malware", "phishing")
SHIPPED_CATEGORIES = DEFAULT_CATEGORIES
# UT1's category names (its site's table of categories); any of them may be given as a folder of lists.
UT1_CATEGORIES = frozenset(
    """adult agressif arjel associations_religieuses astrology audio-video bank bitcoin blog celebrity chat child
    cleaning cooking cryptojacking dangerous_material dating ddos dialer doh download drogue educational_games
    examen_pix exceptions_liste_bu filehosting financial forums gambling games hacking jobsearch lingerie
    liste_blanche liste_bu malware manga marketingware mixed_adult mobile-phone phishing press publicite radio
    reaffected redirector remote-control sect sexual_education shopping shortener social_networks special sports
    stalkerware strict_redirector strong_redirector translation tricheur update violence vpn warez webmail""".split()
)
DATATROVE_TARBALL = "url_filterblacklistsv0_3_0.tar.gz"
_HASH_SEED = 0x5EED_CAFE
_BUCKET_BITS = 20  # an offset table of 8 MB
# The cache key names the hash function: polars does not promise the same string hash across its versions.
_HASH_VERSION = f"polars-{pl.__version__}-seed{_HASH_SEED}-v1"
_SCHEME = r"^(?:[a-z0-9+.\-]+:)?//"


def hash_strings(values: pl.Series) -> np.ndarray:
    """64-bit hashes of strings, the same in every process with this polars version."""
    return values.hash(seed=_HASH_SEED).to_numpy()


def normalise_domains(entries: pl.Series) -> pl.Series:
    """Lowercased, trimmed, trailing dot removed; comment lines and blanks dropped. "www." stays, as in datatrove."""
    s = entries.str.strip_chars().str.to_lowercase()
    s = s.filter(s.is_not_null() & (s != "") & ~s.str.starts_with("#"))
    return s.str.replace(r"\s+#.*$", "").str.strip_chars_end(".")


def url_key(urls: pl.Series) -> pl.Series:
    """A URL as UT1's `urls` list writes one: lowercased, without scheme, fragment, leading "www." or trailing "/"."""
    s = urls.str.strip_chars().str.to_lowercase().str.replace(_SCHEME, "")
    return s.str.splitn("#", 2).struct.field("field_0").str.strip_prefix("www.").str.strip_chars_end("/")


def normalise_urls(entries: pl.Series) -> pl.Series:
    s = entries.str.strip_chars()
    return url_key(s.filter(s.is_not_null() & (s != "") & ~s.str.starts_with("#")))


def normalise_word(word: str) -> str:
    """datatrove's normalisation of a list word: alphanumerics only, lowercased ("2 girls 1 cup" -> "2girls1cup")."""
    return re.sub(r"[^a-zA-Z0-9]+", "", word).lower()


def parse_words(lines: Iterable[str]) -> frozenset[str]:
    """A word list as datatrove reads it: lines starting "#" skipped, each other line normalised."""
    return frozenset(w for line in lines if line and line[0] != "#" and (w := normalise_word(line)))


def _lines(data: bytes) -> pl.Series:
    """One string a line, parsed in polars: millions of lines without millions of Python objects."""
    if not data.strip():
        return pl.Series("e", [], dtype=pl.String)
    return pl.read_csv(
        io.BytesIO(data), has_header=False, separator="\x1f", quote_char=None, new_columns=["e"],
        schema={"e": pl.String}, encoding="utf8-lossy",
    )["e"]  # fmt: skip


@dataclass(frozen=True)
class HashedList:
    """A list's entries as a sorted array of unique 64-bit hashes, and what it was built from."""

    hashes: np.ndarray
    entries: int  # distinct normalised entries; entries - len(hashes) is the number of colliding pairs
    source: str
    key: str = ""  # the cache key: a digest of the source's identity and the hash function

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """For each hash, whether the list holds it (vectorised binary search)."""
        if len(self.hashes) == 0 or len(hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        if len(self.hashes) < 1 << 16:
            return self.hashes[np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)] == hashes
        # A big list: the top bits of a hash pick its bucket (~4 entries for UT1 adult) from an offset table, and a
        # few vectorised bisection steps inside the bucket replace ~22 cache misses of a search over the array.
        offsets = self._bucket_offsets
        bucket = (hashes >> np.uint64(64 - _BUCKET_BITS)).astype(np.int64)
        lo, hi = offsets[bucket], offsets[bucket + 1]
        while (active := lo < hi).any():
            mid = (lo + hi) >> 1
            right = self.hashes[np.where(active, mid, 0)] < hashes
            lo = np.where(active & right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)
        return self.hashes[np.minimum(lo, len(self.hashes) - 1)] == hashes

    @functools.cached_property
    def _bucket_offsets(self) -> np.ndarray:
        buckets = (self.hashes >> np.uint64(64 - _BUCKET_BITS)).astype(np.int64)
        counts = np.bincount(buckets, minlength=1 << _BUCKET_BITS)
        return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    @classmethod
    def build(cls, entries: pl.Series, source: str, key: str = "") -> HashedList:
        unique = entries.unique()
        hashes = pl.Series(hash_strings(unique)).sort().to_numpy()  # polars sorts 4M u64 ~20x faster than np.unique
        keep = np.ones(len(hashes), dtype=bool)
        keep[1:] = hashes[1:] != hashes[:-1]
        return cls(np.ascontiguousarray(hashes[keep]), len(unique), source, key)

    def __or__(self, other: HashedList) -> HashedList:
        if not len(other):
            return self
        if not len(self):
            return other
        merged = np.union1d(self.hashes, other.hashes)
        return HashedList(merged, self.entries + other.entries, f"{self.source}+{other.source}", self.key + other.key)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crawl2chat", "url_lists")


def cached_list(
    identity: str, read: Callable[[], bytes], normalise: Callable[[pl.Series], pl.Series], cache_dir: str | None
) -> HashedList:
    """The hashed list for `identity`, from the cache when it is there, else read, hashed and written there."""
    key = hashlib.sha256(f"{identity}\n{normalise.__name__}\n{_HASH_VERSION}".encode()).hexdigest()[:24]
    folder = cache_dir or default_cache_dir()
    path, meta_path = os.path.join(folder, f"{key}.npy"), os.path.join(folder, f"{key}.json")
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        return HashedList(np.asarray(np.load(path, mmap_mode="r")), meta["entries"], meta["source"], key)
    built = HashedList.build(normalise(_lines(read())), identity.split("\n", 1)[0], key)
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npy"  # written aside, then renamed: a killed run never leaves a half cache
        np.save(tmp, built.hashes)
        os.replace(tmp, path)
        with open(f"{meta_path}.{os.getpid()}.tmp", "w") as f:
            json.dump({"entries": built.entries, "source": built.source, "identity": identity}, f)
        os.replace(f"{meta_path}.{os.getpid()}.tmp", meta_path)
    except OSError:  # a read-only home: the list still works, from memory, and is rebuilt next time
        return built
    return HashedList(np.asarray(np.load(path, mmap_mode="r")), built.entries, built.source, key)


def _empty(source: str = "none") -> HashedList:
    return HashedList(np.zeros(0, dtype=np.uint64), 0, source)


@dataclass(frozen=True)
class CategoryLists:
    """The five lists of one category."""

    name: str
    domains: HashedList = field(default_factory=_empty)
    urls: HashedList = field(default_factory=_empty)
    banned_words: frozenset[str] = frozenset()
    banned_subwords: frozenset[str] = frozenset()
    soft_banned_words: frozenset[str] = frozenset()
    word_source: str = "none"

    @classmethod
    def of(cls, name: str, *, domains: Iterable[str] = (), urls: Iterable[str] = (), banned_words: Iterable[str] = (),
           banned_subwords: Iterable[str] = (), soft_banned_words: Iterable[str] = ()) -> CategoryLists:  # fmt: skip
        """Lists given in code (tests, a few extra entries)."""
        d, u = pl.Series(list(domains), dtype=pl.String), pl.Series(list(urls), dtype=pl.String)
        words = [parse_words(w) for w in (banned_words, banned_subwords, soft_banned_words)]
        return cls(
            name,
            HashedList.build(normalise_domains(d), "given") if len(d) else _empty(),
            HashedList.build(normalise_urls(u), "given") if len(u) else _empty(),
            *words,
            word_source="given" if any(words) else "none",
        )

    def __or__(self, other: CategoryLists) -> CategoryLists:
        return CategoryLists(
            self.name, self.domains | other.domains, self.urls | other.urls,
            self.banned_words | other.banned_words, self.banned_subwords | other.banned_subwords,
            self.soft_banned_words | other.soft_banned_words,
            "+".join(s for s in (self.word_source, other.word_source) if s != "none") or "none",
        )  # fmt: skip

    def describe(self) -> dict:
        """Sizes, sources and cache keys, for a stage's recorded config."""
        words = {k: len(getattr(self, k)) for k in WORD_KINDS}
        lists = {k: {"source": h.source, "entries": h.entries, "hashes": len(h), "key": h.key}
                 for k, h in (("domains", self.domains), ("urls", self.urls))}  # fmt: skip
        return {**lists, **words, "word_source": self.word_source}


def datatrove_adult(cache_dir: str | None = None) -> CategoryLists:
    """FineWeb's adult lists as datatrove's wheel ships them."""
    try:
        assets = files("datatrove") / "assets"
    except ModuleNotFoundError as e:
        message = "the adult category reads its lists from the datatrove package (pip install datatrove)"
        raise ModuleNotFoundError(message) from e
    tarball = assets / DATATROVE_TARBALL
    with tarball.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()  # 18 MB read in blocks: ~40 ms a load

    def member(name: str) -> Callable[[], bytes]:
        def read() -> bytes:
            with tarball.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
                return tar.extractfile(name).read()

        return read

    source = f"datatrove/assets/{DATATROVE_TARBALL}"
    domains = cached_list(f"{source}:domains\nsha256={digest}", member("domains"), normalise_domains, cache_dir)
    urls = cached_list(f"{source}:urls\nsha256={digest}", member("urls"), normalise_urls, cache_dir)
    words = {k: parse_words((assets / f"{k}.txt").read_text(encoding="utf-8").splitlines()) for k in WORD_KINDS}
    return CategoryLists("adult", domains, urls, **words, word_source="datatrove/assets")


def shipped(name: str, cache_dir: str | None = None) -> CategoryLists:
    """A category's lists from pipeline/data/url_blocklist/{name}/ (adult: datatrove's)."""
    if name == "adult":
        return datatrove_adult(cache_dir)
    folder = files("pipeline") / "data" / "url_blocklist" / name
    if not folder.is_dir():
        return CategoryLists(name)

    def text(kind: str) -> str:
        path = folder / f"{kind}.txt"
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    source = f"pipeline/data/url_blocklist/{name}"
    lists = {}
    for kind, normalise in (("domains", normalise_domains), ("urls", normalise_urls)):
        entries = normalise(pl.Series(text(kind).splitlines(), dtype=pl.String))
        lists[kind] = HashedList.build(entries, f"{source}/{kind}.txt") if len(entries) else _empty()
    return CategoryLists(
        name,
        **lists,
        **{k: parse_words(text(k).splitlines()) for k in WORD_KINDS},
        word_source=source,
    )


def from_ut1_folder(
    lists: str, name: str, storage_options: dict | None = None, cache_dir: str | None = None
) -> CategoryLists:
    """`{lists}/{name}/domains` and `urls` (a local folder or an s3:// prefix); an absent file is an empty list."""
    fs, root = fsspec.core.url_to_fs(lists, **(storage_options or {}))
    out = CategoryLists(name)
    for kind, normalise in (("domains", normalise_domains), ("urls", normalise_urls)):
        path = f"{root.rstrip('/')}/{name}/{kind}"
        if not fs.isfile(path):
            continue
        info = fs.info(path)
        version = info.get("ETag") or info.get("mtime") or info.get("LastModified") or info.get("created")
        uri = f"{lists.rstrip('/')}/{name}/{kind}"
        identity = f"{uri}\nsize={info.get('size')} version={version}"
        hashed = cached_list(identity, lambda p=path: fs.cat_file(p), normalise, cache_dir)
        out = out | CategoryLists(name, **{kind: hashed})
    return out


def load_category(
    name: str, lists: str | None = None, storage_options: dict | None = None, cache_dir: str | None = None
) -> CategoryLists:
    """What ships for `name`, plus `{lists}/{name}/` where `lists` is given and has that folder."""
    if name not in UT1_CATEGORIES:
        raise ValueError(f"unknown URL category {name!r}: use one of UT1's ({', '.join(sorted(UT1_CATEGORIES))})")
    out = shipped(name, cache_dir) if name in SHIPPED_CATEGORIES else CategoryLists(name)
    if lists is not None:
        out = out | from_ut1_folder(lists, name, storage_options, cache_dir)
    if not (len(out.domains) or len(out.urls) or out.banned_words or out.banned_subwords or out.soft_banned_words):
        where = f"{lists}/{name}/domains" if lists else "a folder of UT1 lists (url_lists)"
        raise FileNotFoundError(f"URL category {name!r} has no shipped lists and none in {where}")
    return out
