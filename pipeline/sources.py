"""Crawls: named WARC sources cut into shards.

A source is a local folder of .warc/.warc.gz files, an s3:// prefix, or a Common Crawl `warc.paths.gz` listing.
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

from pipeline.storage import Store

SAMPLE_CRAWL = "sample"
SAMPLE_SOURCE = "builtin:sample"  # resolved where the package is installed, so registries stay portable
COMMON_CRAWL_BUCKET = "s3://commoncrawl/"
WARC_SUFFIXES = (".warc", ".warc.gz")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def resolve_source(source: str) -> str:
    """The path or URI behind a source; the bundled sample's WARC files ship inside the package."""
    if source == SAMPLE_SOURCE:
        return str(importlib.resources.files("pipeline") / "sample_crawl")
    return source


def is_listing(source: str) -> bool:
    return source.endswith(".paths.gz") or source.endswith(".paths")


def source_storage_options(source: str) -> dict:
    """Common Crawl's public bucket is read anonymously; other sources use the environment's credentials."""
    return {"anon": True} if source.startswith(COMMON_CRAWL_BUCKET) else {}


def list_source_files(source: str, storage_options: dict | None = None) -> list[str]:
    """Every WARC file of a source, sorted: paths relative to a folder or prefix, full URIs from a listing.

    Raises FileNotFoundError naming a missing source.
    """
    options = storage_options if storage_options is not None else source_storage_options(source)
    fs, path = fsspec.core.url_to_fs(resolve_source(source), **options)
    if not fs.exists(path):
        raise FileNotFoundError(f"crawl source not found: {source!r}")
    if is_listing(source):
        with fs.open(path, "rb") as f:
            raw = f.read()
        text = gzip.decompress(raw).decode() if source.endswith(".gz") else raw.decode()
        # Common Crawl listings hold bucket-relative keys: crawl-data/CC-MAIN-.../warc/....warc.gz
        return sorted(
            line if "://" in line or line.startswith("/") else COMMON_CRAWL_BUCKET + line
            for line in (x.strip() for x in text.splitlines())
            if line
        )
    if not fs.isdir(path):
        raise NotADirectoryError(f"crawl source must be a folder, an s3:// prefix or a warc.paths.gz listing: {source!r}")
    root = path.rstrip("/") + "/"
    return sorted(p[len(root) :] for p in fs.find(path) if p.endswith(WARC_SUFFIXES) and p.startswith(root))


@dataclass
class Crawl:
    name: str
    source: str
    files_per_shard: int = 1
    shards: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"crawl name must match {_NAME.pattern} (it becomes a partition key): {self.name!r}")
        if self.files_per_shard < 1:
            raise ValueError(f"files_per_shard must be >= 1, got {self.files_per_shard}")

    @property
    def shard_keys(self) -> list[str]:
        return [shard_key(i) for i in range(len(self.shards))]

    def files(self, shard: str) -> list[str]:
        """The URIs of a shard's WARC files."""
        index = int(shard)
        if not 0 <= index < len(self.shards):
            raise KeyError(f"crawl {self.name!r} has {len(self.shards)} shards; no shard {shard!r}")
        if is_listing(self.source):
            return list(self.shards[index])
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
    def __init__(self, store: Store, options_for: Callable[[str], dict] = source_storage_options):
        self.store = store
        self.options_for = options_for  # fsspec options for a source URI (credentials, endpoint)

    def list_files(self, source: str) -> list[str]:
        return list_source_files(source, self.options_for(resolve_source(source)))

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
        return Crawl(**self.store.read_json(path))

    def save(self, crawl: Crawl) -> None:
        self.store.write_json(self._path(crawl.name), asdict(crawl))

    def add(self, name: str, source: str, files_per_shard: int | None = None) -> tuple[Crawl, list[str]]:
        """Registers a crawl (or re-reads a registered one) and returns it with its new shard keys.

        Re-adding a name with another source is an error: the shards already made belong to the first source.
        """
        try:
            crawl = self.get(name)
        except KeyError:
            default = 100 if is_listing(source) or source.startswith("s3://") else 1
            crawl = Crawl(name=name, source=source, files_per_shard=files_per_shard or default)
        if crawl.source != source:
            raise ValueError(f"crawl {name!r} is registered with source {crawl.source!r}, not {source!r}")
        new = crawl.add_files(self.list_files(source))
        self.save(crawl)
        return crawl, new

    def discover(self, name: str) -> list[str]:
        """Lists the crawl's source again and adds shards for files that appeared; returns the new shard keys."""
        crawl = self.get(name)
        new = crawl.add_files(self.list_files(crawl.source))
        if new:
            self.save(crawl)
        return new
