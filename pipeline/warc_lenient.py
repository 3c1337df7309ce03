"""A forgiving WARC record parser for the files fastwarc will not read: bare-LF line endings (ClueWeb09's WARC/0.18,
early Internet Archive WARC/0.17), with blank lines or stray bytes between records.

It yields objects with the attributes pipeline.warc reads from a fastwarc record, so the same code turns both into
rows and drops. It is plain Python (8,300 docs/s against fastwarc's 20,500 on the same pages here), used only for
files whose first header is not CRLF-terminated; standard files keep fastwarc's speed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fastwarc.warc import WarcRecordType

VERSION_LINE = re.compile(rb"^WARC/\d+\.\d+\r?\n$")
MAX_HEADER_BYTES = 64 * 1024  # longer header blocks are skipped as `header_too_long`
_TYPES = {
    b"response": WarcRecordType.response,
    b"revisit": WarcRecordType.revisit,
    b"request": WarcRecordType.request,
    b"warcinfo": WarcRecordType.warcinfo,
    b"metadata": WarcRecordType.metadata,
    b"resource": WarcRecordType.resource,
    b"conversion": WarcRecordType.conversion,
    b"continuation": WarcRecordType.continuation,
}
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


class BadRecord(Exception):
    """A record that cannot be parsed; `reason` is the drop reason, `where` its offset, `headers` what was read."""

    def __init__(self, reason: str, detail: str, where: int, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.reason, self.where, self.headers = reason, where, headers or {}


@dataclass
class HttpHeaders:
    status_code: int


@dataclass
class LenientRecord:
    """The subset of fastwarc's WarcRecord that pipeline.warc reads."""

    stream_pos: int
    headers: dict[str, str]
    record_type: WarcRecordType
    content_length: int
    http_headers: HttpHeaders | None
    http_content_type: str | None
    http_charset: str | None
    reader: io.BytesIO

    @property
    def record_id(self) -> str | None:
        return self.headers.get("WARC-Record-ID")


class _Headers(dict):
    """Header fields by name, looked up without regard to case (WARC and HTTP field names are case-insensitive)."""

    def get(self, key, default=None):
        return super().get(key.lower(), default)


def parse_header_block(lines: list[bytes]) -> _Headers:
    headers = _Headers()
    for line in lines:
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def parse_http(block: bytes) -> tuple[HttpHeaders | None, str | None, str | None, bytes]:
    """(status, content type, charset, body) of an HTTP response block; status None if there is no status line."""
    end = min((i for i in (block.find(b"\r\n\r\n"), block.find(b"\n\n")) if i >= 0), default=-1)
    if not block.startswith(b"HTTP/") or end < 0:
        return None, None, None, block
    head = block[:end].split(b"\n")
    body = block[end + (4 if block[end : end + 4] == b"\r\n\r\n" else 2) :]
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return None, None, None, body
    fields = parse_header_block([line.rstrip(b"\r") for line in head[1:]])
    content_type = fields.get("content-type")
    mime = content_type.split(";", 1)[0].strip().lower() if content_type else None
    charset = _CHARSET.search(content_type) if content_type else None
    return HttpHeaders(status), mime, charset.group(1).lower() if charset else None, body


def iter_records(fh) -> Iterator[LenientRecord | BadRecord]:
    """Records of an uncompressed WARC stream, in order; a record that cannot be parsed is yielded as a BadRecord
    and reading goes on at the next version line."""
    stream = fh if isinstance(fh, io.BufferedIOBase) else io.BufferedReader(fh)
    while True:
        start = stream.tell()
        line = stream.readline()
        if not line:
            return
        if not line.strip():
            continue
        if not VERSION_LINE.match(line):  # not where a record starts: skip to the next version line
            while True:
                at = stream.tell()
                line = stream.readline()
                if not line or VERSION_LINE.match(line):
                    break
            yield BadRecord("corrupt_record", f"{at - start} bytes that are no WARC record", start)
            if not line:
                return
            start = at
        header_lines, size = [], 0
        while (line := stream.readline()) and line.strip():
            size += len(line)
            header_lines.append(line.rstrip(b"\r\n"))
            if size > MAX_HEADER_BYTES:
                yield BadRecord("header_too_long", f"header block over {MAX_HEADER_BYTES} bytes", start,
                                parse_header_block(header_lines[:-1]))
                _skip_to_next_record(stream)
                break
        else:
            yield from _record(stream, start, parse_header_block(header_lines))
            continue


def _record(stream, start: int, headers: _Headers) -> Iterator[LenientRecord | BadRecord]:
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        yield BadRecord("malformed_header", f"Content-Length {headers.get('content-length')!r}", start, headers)
        _skip_to_next_record(stream)
        return
    block = stream.read(length)
    if len(block) < length:
        yield BadRecord("truncated", f"block has {len(block)} of {length} bytes", start, headers)
        return
    record_type = _TYPES.get(headers.get("warc-type", "").encode().lower(), WarcRecordType.unknown)
    if record_type in (WarcRecordType.response, WarcRecordType.revisit):
        status, mime, charset, body = parse_http(block)
    else:
        status, mime, charset, body = None, None, None, block
    yield LenientRecord(start, headers, record_type, len(body), status, mime, charset, io.BytesIO(body))


def _skip_to_next_record(stream) -> None:
    """Reads past the rest of a bad record, up to (not including) the next version line."""
    while True:
        at = stream.tell()
        line = stream.readline()
        if not line or VERSION_LINE.match(line):
            stream.seek(at)
            return
