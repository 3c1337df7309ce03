"""Charset-aware decoding and main-text extraction."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import html_page
from pipeline.documents import RECORD_SCHEMA
from pipeline.extract import decode_html, extract_records, extract_text

FRENCH = "Le café est déjà servi à l'élève, où est la bibliothèque ? Très bien, merci beaucoup."


def test_utf8_is_taken_as_is():
    assert decode_html(FRENCH.encode(), None) == (FRENCH, "utf-8")


def test_header_says_utf8_but_body_is_cp1252():
    text, how = decode_html(FRENCH.encode("cp1252"), "utf-8")
    assert text == FRENCH
    assert how.endswith("-detected")


def test_meta_declared_latin1():
    body = b'<html><head><meta charset="iso-8859-1"></head><body>' + FRENCH.encode("latin-1") + b"</body></html>"
    text, how = decode_html(body, None)
    assert FRENCH in text and how == "iso8859-1-meta"


def test_a_few_invalid_bytes_in_utf8_become_replacement_characters():
    body = ("Naïve café " * 50).encode() + b"\xff\xfe" + ("résumé " * 50).encode()
    text, how = decode_html(body, "utf-8")
    assert how == "utf-8-replaced"
    assert text.count("\ufffd") == 2 and "résumé" in text


def test_unknown_charset_name_falls_back_to_detection():
    text, how = decode_html(FRENCH.encode("cp1252"), "x-no-such-charset")
    assert text == FRENCH and how.endswith("-detected")


def test_extractors_find_the_main_text(prose):
    page = html_page("Title", [prose]).decode()
    page = page.replace("<body>", "<body><nav><a href='/'>Home</a> <a href='/x'>About</a></nav>")
    assert prose in extract_text(page, "resiliparse")
    assert "Hurd" in extract_text(page, "trafilatura")
    with pytest.raises(ValueError, match="extractor must be one of"):
        extract_text(page, "beautifulsoup")


def test_extract_records_fills_the_fineweb_schema_and_drops_empty_pages(prose):
    rows = [
        {"id": "a", "url": "https://a.org", "date": "2024", "file_path": "f.warc.gz", "offset": 0,
         "content_type": "text/html", "charset": "utf-8", "html": html_page("A", [prose])},
        {"id": "b", "url": "https://b.org", "date": "2024", "file_path": "f.warc.gz", "offset": 9,
         "content_type": "text/html", "charset": None, "html": b"<html><body><script>x()</script></body></html>"},
    ]
    docs, dropped, notes = extract_records(pl.DataFrame(rows, schema=RECORD_SCHEMA), "sample", "resiliparse")
    assert docs["id"].to_list() == ["a"] and docs["dump"].to_list() == ["sample"]
    assert dropped.select("id", "reason").rows() == [("b", "empty_text")]
    assert notes["charset:utf-8"] == 2
