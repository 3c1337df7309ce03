"""Crawl sources, shards and the registry."""

from __future__ import annotations

import gzip

import pytest

from conftest import write_warc
from pipeline.sources import SAMPLE_SOURCE, Crawl, CrawlRegistry, list_source_files
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


def test_common_crawl_listing_is_read_and_keys_become_bucket_uris(tmp_path):
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(b"crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz\ncrawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz\n"))
    files = list_source_files(str(listing))
    assert files == [
        "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
        "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz",
    ]
    crawl = Crawl("CC-MAIN-2024-10", str(listing), files_per_shard=100)
    assert crawl.add_files(files) == ["00000"] and crawl.files("00000") == files


def test_full_dump_stays_under_dagster_partition_limit():
    crawl = Crawl("CC-MAIN-2024-10", "x.paths.gz", files_per_shard=100)
    crawl.add_files([f"s3://commoncrawl/f{i:06d}.warc.gz" for i in range(90_000)])
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
