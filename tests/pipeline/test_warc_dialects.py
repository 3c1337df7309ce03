"""WARC files as real tools and eras write them (tests/data/warc_dialects/, built by scripts/build_warc_dialects.py
from the sample's pages): every page is read, and a bad record costs that record only, with its id, URL and reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pipeline.warc import read_warc

DIALECTS = Path(__file__).resolve().parents[1] / "data" / "warc_dialects"
EXPECTED = json.loads((DIALECTS / "expected.json").read_text())


def _read(path: Path):
    batches = list(read_warc(str(path)))
    return [r for b in batches for r in b.records.iter_rows(named=True)], [d for b in batches for d in b.dropped.iter_rows(named=True)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_page_of_each_dialect_is_read(name):
    kept, dropped = _read(DIALECTS / name)
    assert [r["url"] for r in kept] == EXPECTED[name]["urls"]
    assert [[d["reason"], d["url"]] for d in dropped] == EXPECTED[name]["drops"]
    assert all(b"<html" in r["html"][:1000].lower() for r in kept)  # the HTTP body, not headers or WARC bytes
    assert all(r["id"] and r["date"] for r in kept)
    for drop in dropped:  # a dropped record names itself: its record id and where it sits in the file
        assert drop["id"] and f"{DIALECTS / name}@" in drop["detail"]


def test_bracketed_target_uris_lose_their_brackets():
    kept, _ = _read(DIALECTS / "wget.warc.gz")
    raw = gzip.decompress((DIALECTS / "wget.warc.gz").read_bytes())
    assert b"WARC-Target-URI: <http://127.0.0.1:" in raw  # as wget writes it
    assert all(r["url"].startswith("http://127.0.0.1:") and not r["url"].endswith(">") for r in kept)


def test_clueweb09_layout_is_what_the_reader_gets():
    raw = gzip.decompress((DIALECTS / "clueweb09.warc.gz").read_bytes())
    assert raw.startswith(b"WARC/0.18\nWARC-Type: warcinfo\n") and b"\r\n" not in raw[:400]
    kept, _ = _read(DIALECTS / "clueweb09.warc.gz")
    assert {r["date"] for r in kept} == {"2009-03-65T08:43:19-0800"}  # kept as written; nothing parses it here
    assert [r["offset"] for r in kept] == sorted(r["offset"] for r in kept)


def test_one_gzip_stream_resumes_after_a_corrupt_record_in_it():
    kept, dropped = _read(DIALECTS / "whole-gzip.warc.gz")
    assert len(kept) == 3 and [d["reason"] for d in dropped] == ["malformed_header"]
    # offsets are positions in the inflated stream: each one starts a record there
    raw = gzip.decompress((DIALECTS / "whole-gzip.warc.gz").read_bytes())
    assert all(raw[r["offset"] :].startswith(b"WARC/1.0\r\n") for r in kept)


def test_bare_lf_file_with_damage_in_the_middle(tmp_path):
    raw = gzip.decompress((DIALECTS / "clueweb09.warc.gz").read_bytes())
    records = raw.split(b"\nWARC/0.18\n")
    damaged = records[2].replace(b"Content-Length: ", b"Content-Length: many", 1)
    path = tmp_path / "damaged.warc"
    path.write_bytes(b"\nWARC/0.18\n".join(records[:2] + [damaged] + records[3:]) + b"\ngarbage line\n")
    kept, dropped = _read(path)
    urls = EXPECTED["clueweb09.warc.gz"]["urls"]
    assert [r["url"] for r in kept] == [urls[0]] + urls[2:]
    assert [(d["reason"], d["url"]) for d in dropped] == [("malformed_header", urls[1]), ("corrupt_record", None)]


def test_bare_lf_record_with_an_overlong_header_is_skipped_alone(tmp_path):
    raw = gzip.decompress((DIALECTS / "clueweb09.warc.gz").read_bytes())
    records = raw.split(b"\nWARC/0.18\n")
    records[3] = records[3].replace(b"WARC-TREC-ID:", b"X-Note: " + b"y" * 100_000 + b"\nWARC-TREC-ID:", 1)
    path = tmp_path / "long.warc.gz"
    path.write_bytes(gzip.compress(b"\nWARC/0.18\n".join(records)))
    kept, dropped = _read(path)
    urls = EXPECTED["clueweb09.warc.gz"]["urls"]
    assert [r["url"] for r in kept] == urls[:2] + urls[3:]
    assert [(d["reason"], d["url"]) for d in dropped] == [("header_too_long", urls[2])]
