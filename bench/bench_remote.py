"""Reading a WARC file over HTTP: pipeline.remote's stream of range requests against the same file on local disk,
a whole-file download to a temporary file first, and fsspec's own HTTPFile (what read_warc used before).

    .venv/bin/python -m bench.bench_remote [--mb 100] [--rtt-ms 0] [--mb-per-s 0]

Input: the bundled sample's complete WARC files (00000-00006; 00007 ends in a cut gzip member) concatenated and
repeated to about --mb MB, served from memory by an HTTP server on 127.0.0.1, in its own process, that answers
Range requests, waits --rtt-ms before each answer and sends at most --mb-per-s a connection (stand-ins for the
round trip to, and the bandwidth from, data.commoncrawl.org). Rows: read_warc's documents/s streaming over HTTP
against the same file on local disk and against downloading it whole first; raw WARC records/s (fastwarc over the
stream, bodies read) against fsspec's HTTPFile. Best of 5 each, the two sides of a row taking turns.
"""

from __future__ import annotations

import argparse
import tempfile
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
from fastwarc.warc import ArchiveIterator, WarcRecordType

from bench.common import sample_files, save
from pipeline.remote import FetchPolicy, open_remote
from pipeline.warc import read_warc


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: bytes, rtt: float, bytes_per_s: float):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data, self.rtt, self.bytes_per_s = data, rtt, bytes_per_s


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool):
        data, wanted = self.server.data, self.headers.get("Range")
        time.sleep(self.server.rtt)
        start, end = 0, len(data) - 1
        if wanted and body:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last or end), end)
        self.send_response(206 if wanted and body else 200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if wanted and body:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            view = memoryview(data)[start : end + 1]
            for i in range(0, len(view), 1 << 20):
                self.wfile.write(view[i : i + (1 << 20)])
                if self.server.bytes_per_s:  # one connection's share of a shared link
                    time.sleep(min(1 << 20, len(view) - i) / self.server.bytes_per_s)


def compare(name: str, ours, ref, reference: str, unit: str = "docs/s", rounds: int = 5) -> dict:
    """bench.common.compare's row, the two sides taking turns: on a shared machine, load that comes and goes then
    hits both sides alike instead of one block of runs."""
    best = {"ours": (float("inf"), 0), "ref": (float("inf"), 0)}
    for _ in range(rounds):
        for side, fn in (("ours", ours), ("ref", ref)):
            start = time.perf_counter()
            items = fn()
            best[side] = min(best[side], (time.perf_counter() - start, items))
    (t_ours, n_ours), (t_ref, n_ref) = best["ours"], best["ref"]
    return {
        "benchmark": name, "reference": reference, "items_ours": n_ours, "items_ref": n_ref,
        "ours": n_ours / t_ours, "ref": n_ref / t_ref, "unit": unit, "ratio": (n_ours / t_ours) / (n_ref / t_ref),
    }


def records(fh) -> int:
    n = 0
    for record in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
        record.reader.read()
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rtt-ms", type=float, default=0.0)
    parser.add_argument("--mb-per-s", type=float, default=0.0, help="bandwidth of one connection (0: loopback's)")
    args = parser.parse_args()
    one = b"".join(Path(f).read_bytes() for f in sample_files()[:7])
    data = one * max(1, round(args.mb * 1e6 / len(one)))
    server = _Server(data, args.rtt_ms / 1000, args.mb_per_s * 1e6)
    # its own process, as a real server is: in this one it would take the GIL from the reader it serves
    process = multiprocessing.get_context("fork").Process(target=server.serve_forever, daemon=True)
    process.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big.warc.gz"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "big.warc.gz"
        local.write_bytes(data)
        print(f"{len(data) / 1e6:.0f} MB, round trip {args.rtt_ms:.0f} ms, {args.mb_per_s or 'unlimited'} MB/s")

        def docs(path: str) -> int:
            return sum(b.records.height for b in read_warc(path))

        def ours() -> int:
            with open_remote(url, policy=FetchPolicy()) as fh:
                return records(fh)

        def fsspec_file() -> int:
            with fsspec.open(url, "rb").open() as fh:
                return records(fh)

        def download_first() -> int:
            with tempfile.NamedTemporaryFile(dir=tmp, suffix=".warc.gz") as out:
                fsspec.filesystem("http").get_file(url, out.name)
                return docs(out.name)

        rows = [
            compare("read_warc over HTTP (range stream)", lambda: docs(url), lambda: docs(str(local)), "same file, local disk"),
            compare("read_warc over HTTP (range stream)", lambda: docs(url), download_first, "download whole, then read_warc"),
            compare("WARC records over HTTP: range stream", ours, fsspec_file, "fsspec HTTPFile", "records/s"),
        ]
    save(f"remote_rtt{args.rtt_ms:.0f}_mbps{args.mb_per_s:.0f}", rows, mb=len(data) / 1e6, rtt_ms=args.rtt_ms, mb_per_s=args.mb_per_s)
    process.terminate()


if __name__ == "__main__":
    main()
