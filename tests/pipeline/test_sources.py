"""Crawl sources, shards and the registry."""

from __future__ import annotations

import gzip

import pytest

from conftest import write_warc
from pipeline.sources import (
    SAMPLE_SOURCE,
    Crawl,
    CrawlRegistry,
    dump_listing,
    is_common_crawl_dump,
    list_source_files,
)
from pipeline.storage import Store


def _folder(tmp_path, n: int, good_page: bytes):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for i in range(n):
        write_warc(src / f"f{i:03d}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}])
    return src


def test_folder_source_lists_warc_files_relative(tmp_path, good_page):
    src = _folder(tmp_path, 3, good_page)
    (src / "notes.txt").write_text("not a warc")
    assert list_source_files(str(src)) == ["f000.warc.gz", "f001.warc.gz", "f002.warc.gz"]


def test_missing_source_and_file_source_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="crawl source not found"):
        list_source_files(str(tmp_path / "nowhere"))
    f = tmp_path / "x.warc.gz"
    f.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="must be a folder"):
        list_source_files(str(f))


def test_listing_keys_are_joined_to_the_base_the_crawl_was_added_with(tmp_path):
    listing = tmp_path / "warc.paths.gz"
    keys = ["crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz", "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz"]
    listing.write_bytes(gzip.compress("\n".join([*keys, "s3://elsewhere/c.warc.gz", ""]).encode()))
    assert list_source_files(str(listing)) == [*sorted(keys), "s3://elsewhere/c.warc.gz"]
    registry = CrawlRegistry(Store(str(tmp_path / "data")), base_url="https://mirror.example/cc")
    crawl, new = registry.add("cc", str(listing))
    assert new == ["00000"] and crawl.files_per_shard == 100 and crawl.base == "https://mirror.example/cc"
    assert crawl.files("00000") == [
        "https://mirror.example/cc/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
        "https://mirror.example/cc/crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz",
        "s3://elsewhere/c.warc.gz",  # a full URI in a listing stays as it is
    ]
    # the base is recorded: another default later does not move the crawl, an explicit base does
    later = CrawlRegistry(registry.store, base_url="https://data.commoncrawl.org/")
    assert later.get("cc").files("00000")[0].startswith("https://mirror.example/cc/crawl-data/")
    crawl, new = later.add("cc", str(listing), base="s3://commoncrawl/")
    assert new == [] and later.get("cc").files("00000")[0] == "s3://commoncrawl/" + sorted(keys)[0]


def test_dump_id_names_its_listing_under_the_base():
    crawl = Crawl("CC-MAIN-2024-10", "CC-MAIN-2024-10", base="https://data.commoncrawl.org/")
    assert crawl.listed and is_common_crawl_dump(crawl.source) and not is_common_crawl_dump("CC-MAIN-24")
    assert crawl.source_uri() == "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-10/warc.paths.gz"
    assert dump_listing("CC-MAIN-2024-10", "s3://commoncrawl") == "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz"


def test_registry_written_before_bases_still_loads(tmp_path):
    """Such registries held bucket URIs read anonymously, which Common Crawl refuses; they now follow the base."""
    store = Store(str(tmp_path))
    old = "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz"
    store.write_json(store.path("crawls", "cc.json"),
                     {"name": "cc", "source": "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz",
                      "files_per_shard": 100, "shards": [[old]]})
    crawl = CrawlRegistry(store).get("cc")
    assert crawl.base == "https://data.commoncrawl.org/"
    assert crawl.files("00000") == ["https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz"]
    assert crawl.add_files(["crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz"]) == []  # known, not a new shard


def test_full_dump_stays_under_dagster_partition_limit():
    crawl = Crawl("CC-MAIN-2024-10", "x.paths.gz", files_per_shard=100)
    crawl.add_files([f"crawl-data/f{i:06d}.warc.gz" for i in range(90_000)])
    assert len(crawl.shards) == 900


def test_shards_are_stable_as_the_source_grows(tmp_path, good_page):
    src = _folder(tmp_path, 3, good_page)
    registry = CrawlRegistry(Store(str(tmp_path / "data")))
    crawl, new = registry.add("web", str(src), files_per_shard=2)
    assert new == ["00000", "00001"] and crawl.shards == [["f000.warc.gz", "f001.warc.gz"], ["f002.warc.gz"]]
    _folder(tmp_path, 5, good_page)  # two more files appear
    assert registry.discover("web") == ["00002"]
    crawl = registry.get("web")
    assert crawl.shards[:2] == [["f000.warc.gz", "f001.warc.gz"], ["f002.warc.gz"]]
    assert crawl.files("00002") == [f"{src}/f003.warc.gz", f"{src}/f004.warc.gz"]
    assert registry.discover("web") == []
    assert registry.names() == ["web"]


def test_registry_errors_name_the_problem(tmp_path, good_page):
    src = _folder(tmp_path, 1, good_page)
    registry = CrawlRegistry(Store(str(tmp_path / "data")))
    registry.add("web", str(src))
    with pytest.raises(ValueError, match="registered with source"):
        registry.add("web", str(tmp_path))
    with pytest.raises(KeyError, match="no crawl named 'other'"):
        registry.get("other")
    with pytest.raises(ValueError, match="crawl name must match"):
        Crawl("bad/name", str(src))
    with pytest.raises(KeyError, match="has 1 shards; no shard '00007'"):
        registry.get("web").files("00007")


def test_bundled_sample_is_a_portable_source(tmp_path):
    registry = CrawlRegistry(Store(str(tmp_path)))
    crawl, new = registry.add("sample", SAMPLE_SOURCE)
    assert len(new) == 8 and crawl.source == SAMPLE_SOURCE
    assert all(not f.startswith("/") for shard in crawl.shards for f in shard)
