"""Crawls: named WARC sources cut into shards.

A source is a local folder of .warc/.warc.gz files, an s3:// prefix, a `warc.paths.gz` listing, or a Common Crawl
dump id (CC-MAIN-2024-10), read from https://data.commoncrawl.org/ unless another base is given (s3://commoncrawl/
signed with the caller's credentials inside AWS, or a mirror).
A crawl's shards are groups of `files_per_shard` files, numbered "00000", "00001", ... in discovery order, and a
shard never changes once made: files found later go into new shards. So partitions stay stable while a source
grows, and a full Common Crawl dump (~90k files) at 100 files a shard stays far under Dagster's 100k partitions.

The registry lives beside the data, at `{root}/crawls/{name}.json`, so it travels with the outputs (local or S3).
"""

from __future__ import annotations

import gzip
import importlib.resources
import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import fsspec

from pipeline.remote import FetchPolicy, fetch_bytes
from pipeline.storage import Store

SAMPLE_CRAWL = "sample"
SAMPLE_SOURCE = "builtin:sample"  # resolved where the package is installed, so registries stay portable
# Common Crawl refuses unsigned S3 requests (since 2022): outside AWS its files are read over HTTPS from here,
# inside AWS from s3://commoncrawl/ signed with the caller's credentials.
COMMON_CRAWL_HTTPS = "https://data.commoncrawl.org/"
COMMON_CRAWL_BUCKET = "s3://commoncrawl/"
WARC_SUFFIXES = (".warc", ".warc.gz")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DUMP = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")


def resolve_source(source: str) -> str:
    """The path or URI behind a source; the bundled sample's WARC files ship inside the package."""
    if source == SAMPLE_SOURCE:
        return str(importlib.resources.files("pipeline") / "sample_crawl")
    return source


def is_listing(source: str) -> bool:
    return source.endswith(".paths.gz") or source.endswith(".paths")


def is_common_crawl_dump(source: str) -> bool:
    """A bare Common Crawl dump id such as CC-MAIN-2024-10."""
    return bool(_DUMP.match(source))


def dump_listing(dump: str, base: str) -> str:
    """The warc.paths.gz listing of a Common Crawl dump under a base (data.commoncrawl.org, the bucket, a mirror)."""
    return join_key(base, f"crawl-data/{dump}/warc.paths.gz")


def join_key(base: str, key: str) -> str:
    """A listing line as a URI: Common Crawl keys are relative to the base; full URIs and paths stay as they are."""
    return key if "://" in key or key.startswith("/") else base.rstrip("/") + "/" + key


def list_source_files(source: str, storage_options: dict | None = None, policy: FetchPolicy | None = None) -> list[str]:
    """Every WARC file of a source, sorted: paths relative to a folder or prefix, a listing's lines as they are.

    Raises FileNotFoundError naming a missing source, FetchFailed for a listing that cannot be fetched.
    """
    options = storage_options or {}
    if is_listing(source):
        try:
            raw = fetch_bytes(source, options, policy)
        except FileNotFoundError:
            raise FileNotFoundError(f"crawl source not found: {source!r}") from None
        text = gzip.decompress(raw).decode() if source.endswith(".gz") else raw.decode()
        return sorted(line for line in (x.strip() for x in text.splitlines()) if line)
    fs, path = fsspec.core.url_to_fs(source, **options)
    if not fs.exists(path):
        raise FileNotFoundError(f"crawl source not found: {source!r}")
    if not fs.isdir(path):
        raise NotADirectoryError(
            f"crawl source must be a folder, an s3:// prefix, a warc.paths.gz listing or a CC-MAIN-YYYY-WW dump: {source!r}"
        )
    root = path.rstrip("/") + "/"
    return sorted(p[len(root) :] for p in fs.find(path) if p.endswith(WARC_SUFFIXES) and p.startswith(root))


@dataclass
class Crawl:
    """A source cut into shards. For a Common Crawl dump or listing, `base` is what the listing's relative keys
    are joined to (recorded when the crawl is added, so a mirror keeps working; `crawl add --base-url` moves it)."""

    name: str
    source: str
    files_per_shard: int = 1
    shards: list[list[str]] = field(default_factory=list)
    base: str | None = None

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"crawl name must match {_NAME.pattern} (it becomes a partition key): {self.name!r}")
        if self.files_per_shard < 1:
            raise ValueError(f"files_per_shard must be >= 1, got {self.files_per_shard}")
        if self.base is None and is_listing(self.source) and any(f.startswith(COMMON_CRAWL_BUCKET) for s in self.shards for f in s):
            # registries written before `base` held bucket URIs, read anonymously, which Common Crawl refuses: keep
            # the keys and let the registry give them its base (HTTPS unless configured otherwise)
            self.shards = [[f.removeprefix(COMMON_CRAWL_BUCKET) for f in shard] for shard in self.shards]

    @property
    def shard_keys(self) -> list[str]:
        return [shard_key(i) for i in range(len(self.shards))]

    @property
    def listed(self) -> bool:
        """Whether the files come from a listing (a dump's or a warc.paths.gz) rather than a folder or prefix."""
        return is_listing(self.source) or is_common_crawl_dump(self.source)

    def source_uri(self) -> str:
        """Where the list of files is read: the dump's listing, or the folder, prefix or listing itself."""
        if is_common_crawl_dump(self.source):
            return dump_listing(self.source, self.base or COMMON_CRAWL_HTTPS)
        return resolve_source(self.source)

    def files(self, shard: str) -> list[str]:
        """The URIs of a shard's WARC files."""
        index = int(shard)
        if not 0 <= index < len(self.shards):
            raise KeyError(f"crawl {self.name!r} has {len(self.shards)} shards; no shard {shard!r}")
        if self.listed:
            return [join_key(self.base or COMMON_CRAWL_HTTPS, f) for f in self.shards[index]]
        base = resolve_source(self.source).rstrip("/")
        return [f"{base}/{f}" for f in self.shards[index]]

    def add_files(self, files: list[str]) -> list[str]:
        """Puts files not yet in a shard into new shards; returns the new shard keys."""
        known = {f for shard in self.shards for f in shard}
        new = [f for f in files if f not in known]
        first = len(self.shards)
        for i in range(0, len(new), self.files_per_shard):
            self.shards.append(new[i : i + self.files_per_shard])
        return [shard_key(i) for i in range(first, len(self.shards))]


def shard_key(index: int) -> str:
    return f"{index:05d}"


class CrawlRegistry:
    """The crawls of one storage root. `options_for` gives fsspec options for a source URI (credentials, endpoint);
    `base_url` is where new Common Crawl dumps and listings of bare keys are read from."""

    def __init__(
        self,
        store: Store,
        options_for: Callable[[str], dict] = lambda uri: {},
        base_url: str = COMMON_CRAWL_HTTPS,
        policy: FetchPolicy | None = None,
    ):
        self.store = store
        self.options_for = options_for
        self.base_url = base_url
        self.policy = policy

    def list_files(self, crawl: Crawl) -> list[str]:
        uri = crawl.source_uri()
        return list_source_files(uri, self.options_for(uri), self.policy)

    def _path(self, name: str) -> str:
        return self.store.path("crawls", f"{name}.json")

    def names(self) -> list[str]:
        directory = self.store.path("crawls")
        if not self.store.exists(directory):
            return []
        return sorted(posixpath.basename(p)[: -len(".json")] for p in self.store.fs.ls(directory, detail=False) if p.endswith(".json"))

    def get(self, name: str) -> Crawl:
        path = self._path(name)
        if not self.store.exists(path):
            raise KeyError(f"no crawl named {name!r} in {self.store.uri('crawls')}; add it with `crawl2chat crawl add`")
        crawl = Crawl(**self.store.read_json(path))
        if crawl.listed and crawl.base is None:
            crawl.base = self.base_url
        return crawl

    def save(self, crawl: Crawl) -> None:
        self.store.write_json(self._path(crawl.name), asdict(crawl))

    def add(
        self, name: str, source: str, files_per_shard: int | None = None, base: str | None = None
    ) -> tuple[Crawl, list[str]]:
        """Registers a crawl (or re-reads a registered one) and returns it with its new shard keys.

        `source` is a folder, an s3:// prefix, a warc.paths.gz listing or a Common Crawl dump id (CC-MAIN-2024-10).
        A listed crawl's `base` is the one given, else the one it was added with, else one read off a listing URL
        (`.../crawl-data/...`), else `base_url`. Re-adding a name with another source is an error: the shards
        already made belong to the first source.
        """
        try:
            crawl = self.get(name)
        except KeyError:
            listed = is_listing(source) or is_common_crawl_dump(source)
            default = 100 if listed or source.startswith("s3://") else 1
            crawl = Crawl(name=name, source=source, files_per_shard=files_per_shard or default)
            if listed:
                crawl.base = base or _listing_base(source) or self.base_url
        if crawl.source != source:
            raise ValueError(f"crawl {name!r} is registered with source {crawl.source!r}, not {source!r}")
        if base is not None and crawl.listed:
            crawl.base = base
        new = crawl.add_files(self.list_files(crawl))
        self.save(crawl)
        return crawl, new

    def discover(self, name: str) -> list[str]:
        """Lists the crawl's source again and adds shards for files that appeared; returns the new shard keys."""
        crawl = self.get(name)
        new = crawl.add_files(self.list_files(crawl))
        if new:
            self.save(crawl)
        return new


def _listing_base(source: str) -> str | None:
    """A Common Crawl listing served by a host or bucket lists keys relative to where `crawl-data/` starts."""
    head, found, _ = source.partition("/crawl-data/")
    return head + "/" if found and "://" in head else None
