"""Reads HTML responses out of WARC files, recording every record it cannot use and why.

Liberal in what it accepts: WARC/0.17, 0.18, 1.0 and 1.1; uncompressed, a gzip member per record, or one gzip
stream for the whole file; CRLF or bare-LF headers; target URIs with or without angle brackets. One bad record never
costs the rest of the file: after a record fastwarc cannot parse (a header over its limit, a malformed field, a
corrupt gzip member) the reader goes on at the next gzip member or `WARC/x.y` line and drops that record with its id,
URL and reason. A file that yields no record at all is recorded as `not_warc` or `empty_file`.
"""
from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import fsspec
import polars as pl
from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipeline import warc_lenient
from pipeline.documents import RECORD_SCHEMA, exclusions
from pipeline.remote import FetchFailed, FetchPolicy, is_local, open_remote
from pipeline.stages import PartOutput, content_bytes

STAGE = "warc_records"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_MAX_RECORD_BYTES = 10 * 1024 * 1024  # CC truncates bodies at 1 MiB; 10 MiB leaves room for big real pages
GZIP_MAGIC = b"\x1f\x8b\x08"
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
    fetch: FetchPolicy | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    batch_size: int = 10_000,
) -> Iterator[WarcBatch]:
    """Yields batches of HTML response records from one WARC file (local path or any fsspec URL).

    A remote file streams through range requests retried on transient errors (`fetch`, see pipeline.remote); one
    that still fails becomes a `fetch_failed` drop naming the status, the offset and the attempts, after the
    records read before the failure, so the shard's other files go on.
    """
    reader = _Reader(path, max_record_bytes)
    options = storage_options or {}
    empty = pl.DataFrame(schema=RECORD_SCHEMA)
    try:
        fh = fsspec.open(path, "rb", **options).open() if is_local(path, options) else open_remote(path, options, fetch)
    except FileNotFoundError as e:  # a listed file that is gone costs that file, not the shard
        missing = reader._file_drop("missing_file", str(e))
        yield WarcBatch(empty, exclusions([missing], STAGE))
        return
    except FetchFailed as e:
        yield WarcBatch(empty, exclusions([reader._file_drop("fetch_failed", str(e))], STAGE))
        return
    kept, reported = 0, False
    with fh:
        for rows, drops in reader.iterate(fh, batch_size):
            failure = getattr(fh, "failure", None)
            if failure is not None:
                # the reader took the failed fetch for the end of the file: its file-level guess is not the cause
                drops = [d for d in drops if d["id"] is not None]
                if not reported:
                    reported = True
                    detail = f"{failure}; the file stops at byte {fh.failed_at} of {fh.size}, {kept + len(rows)} records kept before it"
                    drops.append(reader._file_drop("fetch_failed", detail))
            kept += len(rows)
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
    """Turns one file's records into rows and drops. The file's layout decides how it is read:

    - per-record gzip (Common Crawl) or uncompressed, CRLF headers: fastwarc; after a record it cannot parse, reading
      goes on at the next gzip member or `WARC/x.y` line, and the bad record is dropped with its id and URL;
    - one gzip stream for the whole file (ClueWeb09, some tools' output): the same, over the inflated stream, so a
      bad record still costs only itself (offsets are then positions in the inflated stream);
    - headers ending in a bare LF (ClueWeb09's WARC/0.18, early WARC/0.17 crawls), which fastwarc reads as no
      record at all: pipeline.warc_lenient.
    """

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
        for row, drop in self._records(fh):
            if row is not None:
                rows.append(row)
            if drop is not None:
                drops.append(drop)
            if len(rows) >= batch_size:
                yield rows, drops
                rows, drops = [], []
        if self.records_seen == 0 and not drops:
            drops.append(self._file_drop("empty_file", "no WARC response record in the file"))
        yield rows, drops

    def _records(self, fh) -> Iterator[tuple[dict | None, dict | None]]:
        head = fh.read(len(GZIP_MAGIC))
        fh.seek(0)
        if not head:
            yield None, self._file_drop("empty_file", "the file has no bytes")
            return
        members = head == GZIP_MAGIC
        if members and _one_gzip_stream(fh):
            fh, members = gzip.GzipFile(fileobj=fh), False
        if _bare_lf_headers(fh, members):
            stream = gzip.GzipFile(fileobj=fh) if members else fh
            yield from self._lenient(stream)
        else:
            yield from self._fast(fh, members)

    def _fast(self, fh, members: bool) -> Iterator[tuple[dict | None, dict | None]]:
        find_next = _next_member if members else _next_version_line
        start = 0 if _starts_record(fh, 0, members) else find_next(fh, 0)
        if start is None:
            yield None, self._file_drop("not_warc", "no WARC record header anywhere in the file")
            return
        if start > 0:
            yield None, self._file_drop("corrupt_record", f"{start} bytes before the first WARC record")
        while start is not None:
            fh.seek(start)
            last = None  # where the last record fastwarc parsed starts; every record type counts, so it is exact
            try:
                for record in ArchiveIterator(fh, parse_http=True, fsspec_args=False):
                    last = record.stream_pos
                    if record.record_type in WANTED_TYPES:
                        self.records_seen += 1
                        yield self._convert(record)
                return
            except OSError as e:
                if last is None:  # the record at `start` is the one that cannot be parsed
                    bad, start = start, find_next(fh, start + 1)
                    cut_off = start is None and _record_end(fh, bad, members) is None
                    yield None, self._bad_record(fh, bad, members, e, "truncated" if cut_off else None)
                    continue
                # The record after `last` is the bad one. If its header still reads as a record start, the next
                # round starts there and fails at once (the branch above); if not, it lies between the end of
                # `last` and the next record start, and is dropped here.
                end, start = _record_end(fh, last, members), find_next(fh, last + 1)
                if end is not None and (start is None or end < start) and _bytes_between(fh, end, start).strip():
                    yield None, self._bad_record(fh, end, members, e, "truncated" if start is None else None)
                elif start is None:
                    yield None, self._file_drop("truncated", f"after the record at byte {last}: {e}")

    def _lenient(self, stream) -> Iterator[tuple[dict | None, dict | None]]:
        for record in warc_lenient.iter_records(stream):
            if isinstance(record, warc_lenient.BadRecord):
                where = f"{self.path}@{record.where}"
                yield None, {"id": record.headers.get("WARC-Record-ID"), "url": _bare_uri(record.headers.get("WARC-Target-URI")),
                             "reason": record.reason, "detail": f"{record} ({where})"}
            elif record.record_type in WANTED_TYPES:
                self.records_seen += 1
                yield self._convert(record)

    def _bad_record(self, fh, offset: int, members: bool, error: Exception, reason: str | None = None) -> dict:
        """The drop for a record fastwarc could not parse, with the id and URL read from its raw header."""
        head = _head_at(fh, offset, members)
        message = str(error)
        reason = reason or ("header_too_long" if "header length" in message else (
            "malformed_header" if "Invalid WARC header" in message else "corrupt_record"))
        rid, url = _RECORD_ID.search(head), _TARGET_URI.search(head)
        return {
            "id": rid.group(1).decode("utf-8", "replace").strip() if rid else None,
            "url": _bare_uri(url.group(1).decode("utf-8", "replace")) if url else self.path,
            "reason": reason,
            "detail": f"{type(error).__name__}: {message} ({self.path}@{offset})",
        }

    def _convert(self, record) -> tuple[dict | None, dict | None]:
        """Returns (row, None) for a usable record, (None, drop) for a bad one, (None, None) for a skipped one."""
        url = _bare_uri(record.headers.get("WARC-Target-URI"))
        rid = record.record_id
        where = f"{self.path}@{record.stream_pos}"

        def drop(reason: str, detail: str) -> tuple[None, dict]:
            return None, {"id": rid, "url": url, "reason": reason, "detail": f"{detail} ({where})"}

        if record.record_type == WarcRecordType.revisit:
            self.skipped["revisit"] += 1
            return None, None
        length = (record.headers.get("Content-Length") or "").strip()
        if not length.isdigit():  # fastwarc reads a length it cannot parse as 0, and the block as the next record
            return drop("malformed_header", f"Content-Length {length!r}")
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


WANTED_TYPES = (WarcRecordType.response, WarcRecordType.revisit)
_VERSION_AT_LINE_START = re.compile(rb"(?:^|\n)(WARC/\d+\.\d+\r?\n)")
_RECORD_ID = re.compile(rb"(?im)^WARC-Record-ID:[ \t]*([^\r\n]*)")
_TARGET_URI = re.compile(rb"(?im)^WARC-Target-URI:[ \t]*([^\r\n]*)")
_HEAD_BYTES = 4096


def _bare_uri(uri: str | None) -> str | None:
    """WARC 1.0's grammar (and its own examples, and wget) write the target URI in angle brackets; 1.1 does not."""
    if uri is None:
        return None
    uri = uri.strip()
    return uri[1:-1].strip() if uri.startswith("<") and uri.endswith(">") else uri


def _head_at(fh, offset: int, members: bool, size: int = _HEAD_BYTES) -> bytes:
    """Up to `size` bytes of the record starting at `offset` (inflated when the file is per-record gzip)."""
    fh.seek(offset)
    raw = fh.read(size if not members else 16 * size)
    if not members:
        return raw
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, size)
    except zlib.error:
        return b""


def _bytes_between(fh, start: int, end: int | None, limit: int = 4096) -> bytes:
    fh.seek(start)
    return fh.read(limit if end is None else min(end - start, limit))


def _starts_record(fh, offset: int, members: bool) -> bool:
    return re.match(rb"WARC/\d+\.\d+\r?\n", _head_at(fh, offset, members, 64)) is not None


def _next_member(fh, after: int) -> int | None:
    """Offset of the next gzip member at or after `after` that inflates to a WARC header, or None at end of file.
    (A gzip magic number can occur by chance inside compressed data.)"""
    return _scan(fh, after, GZIP_MAGIC, lambda offset: _starts_record(fh, offset, True))


def _next_version_line(fh, after: int) -> int | None:
    """Offset of the next `WARC/x.y` line at or after `after` in an uncompressed stream, or None."""
    return _scan(fh, after, b"WARC/", lambda offset: _starts_record(fh, offset, False), at_line_start=True)


def _scan(fh, after: int, magic: bytes, confirm, at_line_start: bool = False) -> int | None:
    pos = after
    while True:
        fh.seek(max(pos - 1, 0))
        before = fh.read(1) if pos > 0 else b"\n"
        chunk = fh.read(_RESYNC_CHUNK + len(magic))
        if len(chunk) < len(magic):
            return None
        found = chunk.find(magic)
        while found >= 0:
            line_start = (chunk[found - 1 : found] if found else before) == b"\n"
            if (line_start or not at_line_start) and confirm(pos + found):
                return pos + found
            found = chunk.find(magic, found + 1)
        pos += len(chunk) - len(magic) + 1


def _one_gzip_stream(fh) -> bool:
    """Whether a gzip file is one stream holding many records (ClueWeb09) rather than a member per record.

    The first member is inflated (up to 1 MiB of output) and its first record's length read: a member that goes on
    past that record holds more than one.
    """
    fh.seek(0)
    inflate, out = zlib.decompressobj(16 + zlib.MAX_WBITS), b""
    while len(out) < _RESYNC_CHUNK and not inflate.eof:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        try:
            out += inflate.decompress(chunk, _RESYNC_CHUNK - len(out))
        except zlib.error:
            break
    fh.seek(0)
    end = _first_record_end(out)
    return end is not None and bool(out[end:].strip(b"\r\n"))


def _first_record_end(data: bytes, need_block: bool = True) -> int | None:
    """End of the record that `data` starts with, from its header; with `need_block`, None unless `data` holds it."""
    header_end = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=-1)
    length = re.search(rb"(?im)^Content-Length:[ \t]*(\d+)", data[: max(header_end, 0)])
    if header_end < 0 or not length:
        return None
    body = header_end + (4 if data[header_end : header_end + 4] == b"\r\n\r\n" else 2)
    end = body + int(length.group(1))
    return end if end <= len(data) or not need_block else None


def _record_end(fh, offset: int, members: bool) -> int | None:
    """Where the record starting at `offset` ends: its gzip member's end, or its header plus Content-Length when
    uncompressed. None if that cannot be told (a corrupt member, a header without a length) or lies past the file."""
    fh.seek(offset)
    if not members:
        end = _first_record_end(fh.read(_HEAD_BYTES * 16), need_block=False)
        return offset + end if end is not None else None
    inflate, consumed = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    while not inflate.eof:
        chunk = fh.read(1 << 16)
        if not chunk:
            return None
        try:
            inflate.decompress(chunk)
        except zlib.error:
            return None
        consumed += len(chunk)
    return offset + consumed - len(inflate.unused_data)


def _bare_lf_headers(fh, members: bool) -> bool:
    """Whether the first record's version line ends in a bare LF (ClueWeb09, WARC/0.17-era files)."""
    head = _head_at(fh, 0, members, 64)
    fh.seek(0)
    match = re.match(rb"\s*WARC/\d+\.\d+(\r?\n)", head)
    return match is not None and match.group(1) == b"\n"
