"""Reads HTML responses out of WARC files, recording every record it cannot use and why.

One bad record never costs the rest of the file: when fastwarc fails inside a gzipped file, the reader skips to the
next gzip member (the next `1f 8b 08` after the failure) and goes on; in an uncompressed file, to the next
`WARC/1.` line. A file that yields no record at all is recorded as `not_warc` or `empty_file`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import fsspec
import polars as pl
from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipeline.documents import RECORD_SCHEMA, exclusions
from pipeline.stages import PartOutput, content_bytes

STAGE = "warc_records"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_MAX_RECORD_BYTES = 10 * 1024 * 1024  # CC truncates bodies at 1 MiB; 10 MiB leaves room for big real pages
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/1."
_RESYNC_CHUNK = 1 << 20


@dataclass
class WarcBatch:
    """Up to `batch_size` usable records of one file, and what was dropped while reading them."""

    records: pl.DataFrame
    dropped: pl.DataFrame
    skipped: Counter = field(default_factory=Counter)  # records read but not wanted (revisits), not errors


def read_warc(
    path: str,
    *,
    storage_options: dict | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    batch_size: int = 10_000,
) -> Iterator[WarcBatch]:
    """Yields batches of HTML response records from one WARC file (local path or any fsspec URL)."""
    reader = _Reader(path, max_record_bytes)
    try:
        fh = fsspec.open(path, "rb", **(storage_options or {})).open()
    except FileNotFoundError as e:  # a listed file that is gone costs that file, not the shard
        missing = reader._file_drop("missing_file", str(e))
        yield WarcBatch(pl.DataFrame(schema=RECORD_SCHEMA), exclusions([missing], STAGE))
        return
    with fh:
        for rows, drops in reader.iterate(fh, batch_size):
            yield WarcBatch(
                records=pl.DataFrame(rows, schema=RECORD_SCHEMA),
                dropped=exclusions(drops, STAGE),
                skipped=reader.take_skipped(),
            )


def warc_parts(
    files: list[str],
    *,
    options_for: Callable[[str], dict] = lambda uri: {},
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    batch_size: int = 10_000,
) -> Iterator[PartOutput]:
    """The warc_records stage over a shard's files: one part per (file, batch), named `FFFFF-BBBBB`."""
    for file_index, path in enumerate(files):
        batches = read_warc(
            path, storage_options=options_for(path), max_record_bytes=max_record_bytes, batch_size=batch_size
        )
        for batch_index, batch in enumerate(batches):
            rows_in = batch.records.height + batch.dropped.filter(pl.col("id").is_not_null()).height
            yield PartOutput(
                name=f"{file_index:05d}-{batch_index:05d}",
                kept=batch.records,
                dropped=batch.dropped,
                rows_in=rows_in,
                bytes_in=content_bytes(batch.records),
                notes=batch.skipped,
            )


class _Reader:
    def __init__(self, path: str, max_record_bytes: int):
        self.path = path
        self.max_record_bytes = max_record_bytes
        self.skipped: Counter = Counter()
        self.records_seen = 0

    def take_skipped(self) -> Counter:
        skipped, self.skipped = self.skipped, Counter()
        return skipped

    def iterate(self, fh, batch_size: int) -> Iterator[tuple[list[dict], list[dict]]]:
        rows: list[dict] = []
        drops: list[dict] = []
        head = fh.read(len(GZIP_MAGIC))
        gzipped = head == GZIP_MAGIC
        fh.seek(0)
        if not head:
            drops.append(self._file_drop("empty_file", "the file has no bytes"))
        start = 0 if head else None
        while start is not None:
            fh.seek(start)
            last_pos = start
            try:
                for record in ArchiveIterator(
                    fh,
                    record_types=WarcRecordType.response | WarcRecordType.revisit,
                    parse_http=True,
                    fsspec_args=False,
                ):
                    last_pos = record.stream_pos
                    self.records_seen += 1
                    row, drop = self._convert(record)
                    if row is not None:
                        rows.append(row)
                    if drop is not None:
                        drops.append(drop)
                    if len(rows) >= batch_size:
                        yield rows, drops
                        rows, drops = [], []
                start = None
            except OSError as e:
                resume = _find_next_member(fh, last_pos + 1, GZIP_MAGIC if gzipped else WARC_MAGIC)
                if self.records_seen == 0 and resume is None:
                    drops.append(self._file_drop("not_warc", f"{type(e).__name__}: {e}"))
                else:
                    reason = "truncated" if resume is None else "corrupt_record"
                    drops.append(self._file_drop(reason, f"after the record at byte {last_pos}: {e}"))
                start = resume
        if self.records_seen == 0 and head and not drops:
            drops.append(self._file_drop("empty_file", "no WARC response record in the file"))
        yield rows, drops

    def _convert(self, record) -> tuple[dict | None, dict | None]:
        """Returns (row, None) for a usable record, (None, drop) for a bad one, (None, None) for a skipped one."""
        url = record.headers.get("WARC-Target-URI")
        rid = record.record_id
        where = f"{self.path}@{record.stream_pos}"

        def drop(reason: str, detail: str) -> tuple[None, dict]:
            return None, {"id": rid, "url": url, "reason": reason, "detail": f"{detail} ({where})"}

        if record.record_type == WarcRecordType.revisit:
            self.skipped["revisit"] += 1
            return None, None
        if record.content_length > self.max_record_bytes:
            return drop("too_large", f"{record.content_length} bytes > max_record_bytes={self.max_record_bytes}")
        if record.http_headers is None:
            return drop("truncated", "HTTP headers missing or cut off")
        status = record.http_headers.status_code
        if status != 200:
            return drop("http_status", f"HTTP {status}")
        content_type = (record.http_content_type or "").lower()
        if content_type not in HTML_TYPES:
            return drop("not_html", f"Content-Type {content_type or 'missing'}")
        try:
            body = record.reader.read()
        except OSError as e:
            return drop("truncated", f"body unreadable: {e}")
        if len(body) < record.content_length:
            return drop("truncated", f"body has {len(body)} of {record.content_length} bytes")
        return {
            "id": rid,
            "url": url,
            "date": record.headers.get("WARC-Date"),
            "file_path": self.path,
            "offset": record.stream_pos,
            "content_type": content_type,
            "charset": record.http_charset,
            "html": body,
        }, None

    def _file_drop(self, reason: str, detail: str) -> dict:
        return {"id": None, "url": self.path, "reason": reason, "detail": detail}


def _find_next_member(fh, after: int, magic: bytes) -> int | None:
    """Offset of the next record start at or after `after`, or None at end of file.

    A gzip magic number can occur by chance inside compressed data, so a candidate counts only if it inflates to
    a WARC header.
    """
    pos = after
    while True:
        fh.seek(pos)
        chunk = fh.read(_RESYNC_CHUNK + len(magic))
        if len(chunk) < len(magic):
            return None
        found = chunk.find(magic)
        while found >= 0:
            if _starts_record(fh, pos + found, magic):
                return pos + found
            found = chunk.find(magic, found + 1)
        pos += len(chunk) - len(magic) + 1


def _starts_record(fh, offset: int, magic: bytes) -> bool:
    fh.seek(offset)
    head = fh.read(4096)
    if magic == WARC_MAGIC:
        return head.startswith(WARC_MAGIC)
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, len(WARC_MAGIC)).startswith(WARC_MAGIC)
    except zlib.error:
        return False
