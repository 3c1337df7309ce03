"""HTML bytes -> main text: charset-aware decoding, then extraction.

Extractors: "resiliparse_pruned" (default: resiliparse's main content with boilerplate cut, pipeline/boilerplate.py),
"resiliparse" (its main-content mode alone: faster, twice the non-article text) and "trafilatura" (optional extra).
"""

from __future__ import annotations

import codecs
import re
from collections import Counter

import polars as pl
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import HTMLTree

from pipeline.boilerplate import extract_article
from pipeline.documents import DOC_SCHEMA, exclusions

STAGE = "extracted_text"
EXTRACTORS = ("resiliparse_pruned", "resiliparse", "trafilatura")
DEFAULT_EXTRACTOR = "resiliparse_pruned"
# A page whose bytes are valid UTF-8 but for a few stray bytes is UTF-8 with damage, not another charset:
# in cp1252/latin-1 text nearly every non-ASCII byte breaks UTF-8, in damaged UTF-8 few do.
MAX_UTF8_ERROR_SHARE = 0.1
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def decode_html(body: bytes, declared: str | None) -> tuple[str, str]:
    """Returns (text, how) where `how` names the charset used and how it was chosen.

    Order: strict UTF-8; UTF-8 with replacement when only a few bytes are broken; the charset the HTTP header
    or a <meta> tag declares, if Python knows it and it decodes cleanly; resiliparse's detector.
    """
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    replaced = body.decode("utf-8", errors="replace")
    non_ascii = sum(b >= 0x80 for b in body)
    if non_ascii and replaced.count("\ufffd") / non_ascii <= MAX_UTF8_ERROR_SHARE:
        return replaced, "utf-8-replaced"
    for name, source in ((declared, "header"), (_meta_charset(body), "meta")):
        codec = _codec(name)
        if codec and codec != "utf-8":
            try:
                return body.decode(codec), f"{codec}-{source}"
            except UnicodeDecodeError:
                pass
    detected = _codec(detect_encoding(body)) or "cp1252"
    return body.decode(detected, errors="replace"), f"{detected}-detected"


def extract_text(html: str, extractor: str = DEFAULT_EXTRACTOR) -> str:
    if extractor == "resiliparse_pruned":
        return extract_article(html).strip()
    if extractor == "resiliparse":
        tree = HTMLTree.parse(html)
        return extract_plain_text(tree, preserve_formatting=True, main_content=True, alt_texts=False).strip()
    if extractor == "trafilatura":
        import trafilatura  # optional extra: pip install 'crawl2chat[trafilatura]'

        return (trafilatura.extract(html, include_comments=False, include_tables=True) or "").strip()
    raise ValueError(f"extractor must be one of {EXTRACTORS}, got {extractor!r}")


def extract_records(records: pl.DataFrame, dump: str, extractor: str) -> tuple[pl.DataFrame, pl.DataFrame, Counter]:
    """warc_records rows -> (documents in the FineWeb schema, exclusions, charset notes)."""
    docs: list[dict] = []
    dropped: list[dict] = []
    notes: Counter = Counter()
    for row in records.iter_rows(named=True):
        html, how = decode_html(row["html"], row["charset"])
        notes[f"charset:{how}"] += 1
        try:
            text = extract_text(html, extractor)
        except Exception as e:  # a parser error on one page must not cost the shard; it is recorded
            dropped.append({**row, "reason": "extract_error", "detail": f"{type(e).__name__}: {e}"})
            continue
        if not text:
            dropped.append({**row, "reason": "empty_text", "detail": f"{extractor} found no main text"})
            continue
        docs.append(
            {
                "text": text,
                "id": row["id"],
                "dump": dump,
                "url": row["url"],
                "date": row["date"],
                "file_path": row["file_path"],
                "language": None,
                "language_score": None,
            }
        )
    return pl.DataFrame(docs, schema=DOC_SCHEMA), exclusions(dropped, STAGE), notes


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii", "replace") if match else None


def _codec(name: str | None) -> str | None:
    """Python's canonical codec name for a charset label, or None if unknown."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().lower()).name
    except LookupError:
        return None
