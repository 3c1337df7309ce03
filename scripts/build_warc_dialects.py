"""Builds tests/data/warc_dialects/: small WARC files in the dialects real crawls come in, from real pages.

The pages are English HTML responses of the bundled sample crawl (Debian and Python documentation). Each file holds
a few of them the way one tool or era writes WARC:

- wget.warc.gz        GNU wget --warc-file against an HTTP server on 127.0.0.1 (WARC/1.0, a gzip member per record,
                      `WARC-Target-URI: <...>` in angle brackets, request/response pairs, wget's log as a resource)
- clueweb09.warc.gz   ClueWeb09's layout: WARC/0.18, bare-LF line endings, one gzip stream for the whole file,
                      WARC-TREC-ID fields, out-of-range dates, blank lines between records
- ia2008.warc.gz      an early Internet Archive (Heritrix 1.x) crawl: WARC/0.17, CRLF, a gzip member per record
- warc11.warc         WARC/1.1 uncompressed (warcio), microsecond dates
- whole-gzip.warc.gz  WARC/1.0 records gzipped as one stream, with one corrupt record in the middle
- bad-headers.warc.gz a gzip member per record; one record's header is 200 KB long, one has Content-Length "x12"
- bad-headers.warc    the same records uncompressed

expected.json lists, per file, the URLs of the HTML pages that must be read and the drops (reason, URL) that must be
recorded. Run: `.venv/bin/python scripts/build_warc_dialects.py` (needs wget; writes a few hundred KB).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pipeline" / "sample_crawl" / "sample-00000.warc.gz"
OUT = ROOT / "tests" / "data" / "warc_dialects"
PAGES_PER_FILE = 4


def sample_pages(n: int) -> list[tuple[str, bytes]]:
    """The first `n` HTML 200 responses of the sample (URL, body), skipping very large pages to keep files small."""
    pages = []
    with open(SAMPLE, "rb") as f:
        for record in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            if record.http_headers.status_code == 200 and record.http_content_type == "text/html":
                body = record.reader.read()
                if 3_000 < len(body) < 40_000:
                    pages.append((record.headers.get("WARC-Target-URI"), body))
            if len(pages) == n:
                return pages
    raise SystemExit(f"the sample has fewer than {n} usable pages")


def http_block(body: bytes, nl: bytes = b"\r\n", content_type: bytes = b"text/html; charset=utf-8") -> bytes:
    return nl.join([b"HTTP/1.1 200 OK", b"Content-Type: " + content_type, b"Content-Length: %d" % len(body), b""]) + nl + body


def raw_record(version: bytes, fields: list[tuple[bytes, bytes]], block: bytes, nl: bytes = b"\r\n",
               length: bytes | None = None) -> bytes:
    lines = [version] + [name + b": " + value for name, value in fields]
    lines.append(b"Content-Length: " + (length if length is not None else b"%d" % len(block)))
    return nl.join(lines) + nl + nl + block + nl + nl


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


def wget_warc(pages: list[tuple[str, bytes]], out: Path) -> list[str]:
    """Serves the pages from 127.0.0.1 and lets wget crawl them into a WARC; returns the page URLs wget fetched."""
    with tempfile.TemporaryDirectory() as site, tempfile.TemporaryDirectory() as work:
        names = [f"page{i}.html" for i in range(len(pages))]
        for name, (_, body) in zip(names, pages):
            (Path(site) / name).write_bytes(body)
        index = "".join(f'<a href="{n}">{n}</a>' for n in names)
        (Path(site) / "index.html").write_text(f"<html><body>{index}</body></html>")
        handler = functools.partial(_QuietHandler, directory=site)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            subprocess.run(["wget", "--quiet", "--recursive", "--level=1", "--no-parent", "-e", "robots=off",
                            f"--warc-file={work}/wget", "-P", work, f"{base}/index.html"],
                           check=True, timeout=60)
        finally:
            server.shutdown()
        data = (Path(work) / "wget.warc.gz").read_bytes()
    out.write_bytes(data)  # as wget wrote it (its port and dates change with each build)
    return [f"{base}/{n}" for n in ["index.html", *names]]


def clueweb09(pages: list[tuple[str, bytes]], out: Path) -> list[str]:
    info = b"software: Nutch 1.0-dev\ncollection: ClueWeb09\nconformsTo: http://www.archive.org/documents/WarcFileFormat-0.18.html\n\n"
    records = [raw_record(b"WARC/0.18", [(b"WARC-Type", b"warcinfo"), (b"WARC-Date", b"2009-03-65T08:43:19-0800"),
                                         (b"WARC-Record-ID", b"<urn:uuid:993d3969-9643-4934-b1c6-68d4dbe55b83>"),
                                         (b"Content-Type", b"application/warc-fields"),
                                         (b"WARC-Number-of-Documents", b"%d" % len(pages)),
                                         (b"WARC-Filename", b"00.warc.gz")], info, nl=b"\n")]
    for i, (url, body) in enumerate(pages):
        records.append(raw_record(b"WARC/0.18", [
            (b"WARC-Type", b"response"), (b"WARC-Target-URI", url.encode()),
            (b"WARC-Warcinfo-ID", b"993d3969-9643-4934-b1c6-68d4dbe55b83"), (b"WARC-Date", b"2009-03-65T08:43:19-0800"),
            (b"WARC-Record-ID", b"<urn:uuid:67f7cabd-146c-41cf-bd01-04f5fa7d5229-%d>" % i),
            (b"WARC-TREC-ID", b"clueweb09-en0000-00-%05d" % i), (b"Content-Type", b"application/http;msgtype=response"),
            (b"WARC-Identified-Payload-Type", b"")], http_block(body, b"\n"), nl=b"\n") + b"\n")
    out.write_bytes(gzip.compress(b"".join(records), mtime=0))
    return [url for url, _ in pages]


def ia2008(pages: list[tuple[str, bytes]], out: Path) -> list[str]:
    members = []
    for i, (url, body) in enumerate(pages):
        fields = [(b"WARC-Type", b"response"), (b"WARC-Target-URI", url.encode()), (b"WARC-Date", b"2008-04-30T20:48:25Z"),
                  (b"WARC-IP-Address", b"207.241.229.39"),
                  (b"WARC-Record-ID", b"<urn:uuid:ff728363-2d5f-4f5f-b832-9552de1a6037-%d>" % i),
                  (b"Content-Type", b"application/http; msgtype=response")]
        members.append(gzip.compress(raw_record(b"WARC/0.17", fields, http_block(body)), mtime=0))
        request = b"GET / HTTP/1.0\r\nUser-Agent: Mozilla/5.0 (compatible; heritrix/1.14.0)\r\n\r\n"
        members.append(gzip.compress(raw_record(b"WARC/0.17", [(b"WARC-Type", b"request"), (b"WARC-Target-URI", url.encode()),
                                                               (b"WARC-Date", b"2008-04-30T20:48:25Z"),
                                                               (b"Content-Type", b"application/http; msgtype=request")],
                                                request), mtime=0))
    out.write_bytes(b"".join(members))
    return [url for url, _ in pages]


def warc11(pages: list[tuple[str, bytes]], out: Path) -> list[str]:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=False, warc_version="1.1")
    for i, (url, body) in enumerate(pages):
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                                      warc_headers_dict={"WARC-Date": f"2024-05-01T10:00:0{i}.123456Z",
                                                                         "WARC-Record-ID": f"<urn:uuid:11-{i}>"}))
    out.write_bytes(buffer.getvalue())
    return [url for url, _ in pages]


def _v10(url: str, body: bytes, i: int, *, extra: list[tuple[bytes, bytes]] = (), length: bytes | None = None) -> bytes:
    fields = [(b"WARC-Type", b"response"), (b"WARC-Target-URI", url.encode()), (b"WARC-Date", b"2024-02-01T00:00:00Z"),
              (b"WARC-Record-ID", b"<urn:uuid:10-%d>" % i), (b"Content-Type", b"application/http; msgtype=response"),
              *extra]
    return raw_record(b"WARC/1.0", fields, http_block(body), length=length)


def whole_gzip(pages: list[tuple[str, bytes]], out: Path) -> tuple[list[str], list[list[str]]]:
    records = [_v10(url, body, i) for i, (url, body) in enumerate(pages)]
    records[1] = _v10(*pages[1], 1, length=b"none")
    out.write_bytes(gzip.compress(b"".join(records), mtime=0))
    return [url for i, (url, _) in enumerate(pages) if i != 1], [["malformed_header", pages[1][0]]]


def bad_headers(pages: list[tuple[str, bytes]], out_gz: Path, out_plain: Path) -> tuple[list[str], list[list[str]]]:
    long_field = [(b"X-Crawler-Note", b"x" * 200_000)]
    records = [_v10(url, body, i, extra=long_field if i == 1 else (), length=b"x12" if i == 2 else None)
               for i, (url, body) in enumerate(pages)]
    out_gz.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in records))
    out_plain.write_bytes(b"".join(records))
    keep = [url for i, (url, _) in enumerate(pages) if i not in (1, 2)]
    return keep, [["header_too_long", pages[1][0]], ["malformed_header", pages[2][0]]]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    pages = sample_pages(PAGES_PER_FILE * 6)
    chunk = [pages[i * PAGES_PER_FILE : (i + 1) * PAGES_PER_FILE] for i in range(6)]
    expected = {
        "wget.warc.gz": {"urls": wget_warc(chunk[0], OUT / "wget.warc.gz"), "drops": []},
        "clueweb09.warc.gz": {"urls": clueweb09(chunk[1], OUT / "clueweb09.warc.gz"), "drops": []},
        "ia2008.warc.gz": {"urls": ia2008(chunk[2], OUT / "ia2008.warc.gz"), "drops": []},
        "warc11.warc": {"urls": warc11(chunk[3], OUT / "warc11.warc"), "drops": []},
    }
    urls, drops = whole_gzip(chunk[4], OUT / "whole-gzip.warc.gz")
    expected["whole-gzip.warc.gz"] = {"urls": urls, "drops": drops}
    urls, drops = bad_headers(chunk[5], OUT / "bad-headers.warc.gz", OUT / "bad-headers.warc")
    expected["bad-headers.warc.gz"] = expected["bad-headers.warc"] = {"urls": urls, "drops": drops}
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:>9,}  {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
