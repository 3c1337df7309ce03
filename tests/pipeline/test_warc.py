"""The WARC reader on good and bad files: every bad record is recorded with a reason and the rest survives."""

from __future__ import annotations

import gzip
import os

from conftest import write_warc
from pipeline.warc import read_warc, warc_parts


def _read(path, **kw):
    batches = list(read_warc(str(path), **kw))
    records = [r for b in batches for r in b.records.iter_rows(named=True)]
    dropped = [r for b in batches for r in b.dropped.iter_rows(named=True)]
    return records, dropped


def test_reads_html_responses_with_metadata(tmp_path, good_page):
    path = write_warc(tmp_path / "a.warc.gz", [{"url": "https://a.org/1", "body": good_page}])
    records, dropped = _read(path)
    assert dropped == []
    (rec,) = records
    assert rec["url"] == "https://a.org/1"
    assert rec["html"] == good_page
    assert rec["charset"] == "utf-8"
    assert rec["date"] == "2024-01-01T00:00:00Z"
    assert rec["id"].startswith("<urn:uuid:")
    assert rec["offset"] == 0 and rec["file_path"] == str(path)


def test_bad_records_are_recorded_and_the_rest_kept(tmp_path, good_page):
    records = [
        {"url": "https://a.org/ok1", "body": good_page},
        {"url": "https://a.org/img.png", "body": b"\x89PNG\r\n", "content_type": "image/png"},
        {"url": "https://a.org/missing", "body": b"gone", "status": "404 Not Found"},
        {"url": "https://a.org/huge", "body": b"<p>x</p>" * 2_600_000},  # ~20 MB page
        {"url": "https://a.org/seen", "body": b"", "type": "revisit"},
        {"url": "https://a.org/ok2", "body": good_page},
    ]
    path = write_warc(tmp_path / "mixed.warc.gz", records)
    kept, dropped = _read(path, max_record_bytes=10 * 1024 * 1024)
    assert [r["url"] for r in kept] == ["https://a.org/ok1", "https://a.org/ok2"]
    reasons = {d["url"]: d["reason"] for d in dropped}
    assert reasons == {"https://a.org/img.png": "not_html", "https://a.org/missing": "http_status", "https://a.org/huge": "too_large"}
    assert all(d["stage"] == "warc_records" and d["detail"] for d in dropped)


def test_truncated_gzip_member_at_end(tmp_path, good_page):
    whole = write_warc(tmp_path / "whole.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page} for i in range(3)])
    tail = write_warc(tmp_path / "tail.warc.gz", [{"url": "https://a.org/cut", "body": good_page * 20}]).read_bytes()
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(whole.read_bytes() + tail[: len(tail) * 6 // 10])
    kept, dropped = _read(path)
    assert [r["url"] for r in kept] == [f"https://a.org/{i}" for i in range(3)]
    assert len(dropped) == 1 and dropped[0]["reason"] == "truncated"


def test_corrupt_member_in_the_middle_is_skipped(tmp_path, good_page):
    parts = [write_warc(tmp_path / f"p{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}]).read_bytes() for i in range(3)]
    middle = bytearray(parts[1])
    middle[40:80] = b"\x00" * 40  # inside the deflate stream of record 1
    path = tmp_path / "corrupt.warc.gz"
    path.write_bytes(parts[0] + bytes(middle) + parts[2])
    kept, dropped = _read(path)
    assert [r["url"] for r in kept] == ["https://a.org/0", "https://a.org/2"]
    assert [d["reason"] for d in dropped] == ["corrupt_record"]


def test_uncompressed_warc(tmp_path, good_page):
    path = write_warc(tmp_path / "plain.warc", [{"url": "https://a.org/p", "body": good_page}], gzip=False)
    kept, dropped = _read(path)
    assert [r["url"] for r in kept] == ["https://a.org/p"] and dropped == []


def test_empty_random_and_missing_files(tmp_path):
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    empty_gz = tmp_path / "empty2.warc.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    noise = tmp_path / "noise.warc.gz"
    noise.write_bytes(os.urandom(50_000))
    assert [d["reason"] for d in _read(empty)[1]] == ["empty_file"]
    assert [d["reason"] for d in _read(empty_gz)[1]] in (["empty_file"], ["not_warc"])
    assert [d["reason"] for d in _read(noise)[1]] == ["not_warc"]
    assert [d["reason"] for d in _read(tmp_path / "nope.warc.gz")[1]] == ["missing_file"]


def test_warc_parts_names_parts_by_file_and_batch(tmp_path, good_page):
    a = write_warc(tmp_path / "a.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page} for i in range(5)])
    b = write_warc(tmp_path / "b.warc.gz", [{"url": "https://b.org/0", "body": good_page}])
    parts = list(warc_parts([str(a), str(b)], batch_size=2))
    assert [p.name for p in parts] == ["00000-00000", "00000-00001", "00000-00002", "00001-00000"]
    assert sum(p.kept.height for p in parts) == 6
    assert all(p.bytes_in == len(good_page) * p.kept.height for p in parts)
