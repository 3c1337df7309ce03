"""Common Crawl as its users reach it: a dump's listing and WARC files over HTTP from a real server on 127.0.0.1
that answers Range requests and fails the way data.commoncrawl.org does (503 first, a 500 for good, a 404, a
connection dropped mid-file), and from moto's S3 server behind a proxy that wants signed requests and says SlowDown.
"""

from __future__ import annotations

import gzip
import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from conftest import html_page, write_warc
from pipeline.remote import FetchFailed, FetchPolicy, open_remote, with_retries
from pipeline.sources import CrawlRegistry, list_source_files
from pipeline.storage import Store
from pipeline.warc import read_warc
from test_s3 import s3_endpoint  # noqa: F401 - moto's server on loopback, a fixture

DUMP = "CC-MAIN-2099-01"
PREFIX = f"crawl-data/{DUMP}/segments/1/warc"
FAST = FetchPolicy(attempts=4, max_seconds=10, base_delay=0.001, max_delay=0.01, block_bytes=512)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files  # path -> bytes
        self.fail_first: dict[str, int] = {}  # path -> requests still to answer 503
        self.always: dict[str, int] = {}  # path -> status it always gets
        self.drop_after: dict[str, int] = {}  # path -> offset past which the connection is cut mid-body
        self.stall_first: dict[str, int] = {}  # path -> GETs still to leave silent for 2 s before the body
        self.log: list[tuple[str, str, str | None, int]] = []  # method, path, Range, status
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a CDN does

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _serve(self, send_body: bool):
        srv: _Server = self.server
        path, wanted = self.path.lstrip("/"), self.headers.get("Range")
        with srv.lock:
            status = srv.always.get(path)
            if status is None and srv.fail_first.get(path, 0) > 0:
                srv.fail_first[path] -= 1
                status = 503
            if status is None and path not in srv.files:
                status = 404
            data = srv.files.get(path, b"")
            start, end = 0, len(data) - 1
            if status is None and wanted and send_body:
                first, _, last = wanted.removeprefix("bytes=").partition("-")
                start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
                status = 206
            srv.log.append((self.command, path, wanted, status or 200))
            stall = send_body and srv.stall_first.get(path, 0) > 0
            if stall:
                srv.stall_first[path] -= 1
        if status not in (None, 206):
            message = b"Slow Down" if status == 503 else b"no"
            self.send_response(status)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message if send_body else b"")
            return
        body = data[start : end + 1]
        self.send_response(status or 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not send_body:
            return
        if stall:
            time.sleep(2.0)
        cut = srv.drop_after.get(path)
        if cut is not None and end >= cut:  # a connection that drops mid-body, as a CDN's does under load
            self.wfile.write(body[: max(0, cut - start)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def _pages(tag: str, n: int) -> list[dict]:
    return [{"url": f"https://{tag}.example/{i}", "body": html_page(f"{tag} {i}", [f"page {i} of {tag} " * 40])} for i in range(n)]


@pytest.fixture
def cc(tmp_path):
    """A Common Crawl dump on a local HTTP server: a 503s twice, b is sound, c always 500, d is missing (404),
    e drops the connection mid-file; the listing itself 503s once."""
    files, pages = {}, {}
    for name in "abce":
        pages[name] = _pages(name, 12)
        files[f"{PREFIX}/{name}.warc.gz"] = write_warc(tmp_path / f"{name}.warc.gz", pages[name]).read_bytes()
    listing = "".join(f"{PREFIX}/{name}.warc.gz\n" for name in "abcde")
    files[f"crawl-data/{DUMP}/warc.paths.gz"] = gzip.compress(listing.encode())
    server = _Server(files)
    server.fail_first = {f"crawl-data/{DUMP}/warc.paths.gz": 1, f"{PREFIX}/a.warc.gz": 2}
    server.always = {f"{PREFIX}/c.warc.gz": 500}
    server.drop_after = {f"{PREFIX}/e.warc.gz": len(files[f"{PREFIX}/e.warc.gz"]) // 2}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, pages
    server.shutdown()
    server.server_close()


def _read_shard(files: list[str], options_for=lambda uri: {}) -> tuple[pl.DataFrame, pl.DataFrame]:
    batches = [b for f in files for b in read_warc(f, storage_options=options_for(f), fetch=FAST, batch_size=5)]
    return pl.concat([b.records for b in batches]), pl.concat([b.dropped for b in batches])


def test_dump_is_added_and_read_over_http_with_failures_recorded_per_file(tmp_path, cc):
    server, pages = cc
    registry = CrawlRegistry(Store(str(tmp_path / "data")), base_url=server.url, policy=FAST)
    crawl, new = registry.add(DUMP, DUMP)
    assert new == ["00000"] and crawl.base == server.url
    assert registry.store.read_json(registry.store.path("crawls", f"{DUMP}.json"))["base"] == server.url
    files = crawl.files("00000")
    assert files == [f"{server.url}{PREFIX}/{name}.warc.gz" for name in "abcde"]

    records, dropped = _read_shard(files)
    by_file = dict(zip(files, "abcde"))
    urls = {name: records.filter(pl.col("file_path") == f)["url"].to_list() for f, name in by_file.items()}
    # a's 503s cost retries, not records; b is whole; every body is the one written
    assert urls["a"] == [p["url"] for p in pages["a"]] and urls["b"] == [p["url"] for p in pages["b"]]
    assert records.filter(pl.col("url") == pages["b"][3]["url"])["html"][0] == pages["b"][3]["body"]
    reasons = {by_file[u]: (r, d) for u, r, d in zip(dropped["url"], dropped["reason"], dropped["detail"]) if u in by_file}
    assert reasons["c"][0] == "fetch_failed" and "HTTP 500" in reasons["c"][1] and f"after {FAST.attempts} attempts" in reasons["c"][1]
    assert reasons["d"][0] == "missing_file"
    # e: the records before the cut are kept, the rest of the file is one fetch_failed drop and no made-up cause
    assert 0 < len(urls["e"]) < len(pages["e"]) and urls["e"] == [p["url"] for p in pages["e"]][: len(urls["e"])]
    assert reasons["e"][0] == "fetch_failed" and "records kept before it" in reasons["e"][1]
    e_drops = dropped.filter(pl.col("url") == files[4])
    assert e_drops["reason"].to_list() == ["fetch_failed"], e_drops

    log = server.log
    assert [s for m, p, r, s in log if p.endswith("a.warc.gz")][:2] == [503, 503]
    # bounded, then given up; fsspec's HTTP info() asks with HEAD, then GET, within one attempt
    assert sum(1 for m, p, r, s in log if p.endswith("c.warc.gz")) == 2 * FAST.attempts
    assert sum(1 for m, p, r, s in log if p.endswith("d.warc.gz")) <= 2  # a 404 is not retried (HEAD, then GET)
    b_gets = [r for m, p, r, s in log if p.endswith("b.warc.gz") and m == "GET"]
    assert len(b_gets) > 1 and all(r and r.startswith("bytes=") for r in b_gets)  # streamed in ranges, never whole


def test_failures_name_the_file_and_the_status(tmp_path, cc):
    server, _ = cc
    with pytest.raises(FileNotFoundError, match="crawl source not found"):
        list_source_files(f"{server.url}crawl-data/CC-MAIN-1999-01/warc.paths.gz", policy=FAST)
    server.always[f"crawl-data/{DUMP}/warc.paths.gz"] = 502
    with pytest.raises(FetchFailed, match="HTTP 502 .after 4 attempts") as failed:
        mirror = server.url.replace("//", "//reader:s3cret@")  # a mirror behind a password
        list_source_files(f"{mirror}crawl-data/{DUMP}/warc.paths.gz", policy=FAST)
    assert "s3cret" not in str(failed.value) and "//***@127.0.0.1" in str(failed.value)
    server.always[f"crawl-data/{DUMP}/warc.paths.gz"] = 403  # forbidden is an answer, not a hiccup
    with pytest.raises(FetchFailed, match="HTTP 403 .not retried"):
        list_source_files(f"{server.url}crawl-data/{DUMP}/warc.paths.gz", policy=FAST)
    server.always[f"{PREFIX}/b.warc.gz"] = 403
    drops = [b.dropped for b in read_warc(f"{server.url}{PREFIX}/b.warc.gz", fetch=FAST)]
    assert [(d["reason"], d["detail"].split(" (")[0]) for d in pl.concat(drops).to_dicts()] == [("fetch_failed", "HTTP 403")]


def test_remote_file_reads_and_seeks_like_the_local_one(tmp_path, cc):
    server, _ = cc
    local = server.files[f"{PREFIX}/b.warc.gz"]
    with open_remote(f"{server.url}{PREFIX}/b.warc.gz", policy=FAST) as f:
        assert f.size == len(local) and f.read(10) == local[:10]
        third = len(local) // 3  # across block boundaries (512 bytes)
        f.seek(third)
        assert f.read(third) == local[third : 2 * third] and f.tell() == 2 * third
        f.seek(-7, 2)
        assert f.read() == local[-7:] and f.read(1) == b"" and f.failure is None


def test_a_stalled_connection_is_dropped_and_retried(cc):
    server, _ = cc
    path = f"{PREFIX}/b.warc.gz"
    server.stall_first[path] = 1
    impatient = FetchPolicy(attempts=4, base_delay=0.001, block_bytes=1 << 20, timeout_seconds=0.5)
    with open_remote(server.url + path, policy=impatient) as f:
        assert f.read() == server.files[path] and f.failure is None and f.requests >= 2
    gets = [r for m, p, r, s in server.log if m == "GET"]  # the one block, asked for again after the silence
    assert len(gets) >= 2 and set(gets) == {"bytes=0-" + str(len(server.files[path]) - 1)}


def test_closing_a_file_stops_its_fetch_ahead(cc):
    server, _ = cc
    path = f"{PREFIX}/b.warc.gz"
    server.drop_after[path] = 600  # the second block never comes through
    slow = FetchPolicy(attempts=8, base_delay=5.0, block_bytes=512)
    f = open_remote(server.url + path, policy=slow)
    assert f.read(100) == server.files[path][:100]  # the first block, the second one is now fetched ahead
    time.sleep(0.2)
    start = time.monotonic()
    f.close()
    while any(t.name.startswith("remote-file") for t in threading.enumerate()) and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert time.monotonic() - start < 1.0  # not the minutes its backoff would have taken


def test_backoff_is_full_jitter_and_bounded():
    policy = FetchPolicy(attempts=6, max_seconds=100, base_delay=1.0, max_delay=4.0)
    waits, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 5:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert with_retries(flaky, "x", policy, sleep=waits.append, rng=random.Random(1)) == "ok"
    assert len(waits) == 4 and all(0 <= w <= min(4.0, 2**i) for i, w in enumerate(waits))

    def always_down():
        calls.append(1)
        raise ConnectionResetError("connection reset by peer")

    calls.clear()
    tight = FetchPolicy(attempts=50, max_seconds=0.05, base_delay=0.02, max_delay=0.02)
    with pytest.raises(FetchFailed, match="ConnectionResetError"):
        with_retries(always_down, "x", tight)
    assert 1 < len(calls) < 50  # the time bound, not the attempts, stopped it


class _S3Proxy(ThreadingHTTPServer):
    """Stands in front of moto as Common Crawl's bucket does: a request without a SigV4 signature gets 403, and the
    first `slow_down` object reads get 503 SlowDown."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.removeprefix("http://")
        self.slow_down = 0
        self.log: list[tuple[str, str, int]] = []  # method, path, status
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        srv: _S3Proxy = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=testing/")
        with srv.lock:
            refuse = None if signed else (403, "AccessDenied")
            if refuse is None and self.command == "GET" and ".warc.gz" in self.path and srv.slow_down > 0:
                srv.slow_down -= 1
                refuse = (503, "SlowDown")
            srv.log.append((self.command, self.path, refuse[0] if refuse else 200))
        if refuse:
            xml = f"<Error><Code>{refuse[1]}</Code><Message>{refuse[1]}</Message></Error>".encode()
            self.send_response(refuse[0])
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(b"" if self.command == "HEAD" else xml)
            return
        conn = http.client.HTTPConnection(srv.upstream, timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection") and (key.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


def test_dump_is_read_from_s3_signed_with_the_callers_credentials(tmp_path, s3_endpoint):
    import s3fs

    from assets_defs.resources import PipelineConfig

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("commoncrawl")
    pages = {name: _pages(name, 6) for name in "ab"}
    for name, records in pages.items():
        fs.pipe_file(f"commoncrawl/{PREFIX}/{name}.warc.gz", write_warc(tmp_path / f"{name}.warc.gz", records).read_bytes())
    fs.pipe_file(f"commoncrawl/crawl-data/{DUMP}/warc.paths.gz", gzip.compress(f"{PREFIX}/a.warc.gz\n{PREFIX}/b.warc.gz\n".encode()))
    proxy = _S3Proxy(s3_endpoint)
    proxy.slow_down = 2
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        settings = PipelineConfig(
            data_root=str(tmp_path / "data"), s3_endpoint_url=proxy.url, commoncrawl_base_url="s3://commoncrawl/",
            fetch_backoff_seconds=0.01,
        )
        crawl, new = settings.registry().add(DUMP, DUMP)
        files = crawl.files("00000")
        assert new == ["00000"] and files == [f"s3://commoncrawl/{PREFIX}/a.warc.gz", f"s3://commoncrawl/{PREFIX}/b.warc.gz"]
        records, dropped = _read_shard(files, settings.storage_options)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert records["url"].to_list() == [p["url"] for name in "ab" for p in pages[name]] and dropped.height == 0
    statuses = [s for _, _, s in proxy.log]
    assert 403 not in statuses and statuses.count(503) == 2  # every request signed; both SlowDowns retried


def test_s3_errors_are_told_apart_by_their_code():
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    from pipeline.remote import classify

    def s3_error(code: str, status: int) -> OSError:
        response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return translate_boto_error(ClientError(response, "GetObject"))

    assert classify(s3_error("SlowDown", 503)) == (True, "S3 SlowDown")
    assert classify(s3_error("InternalError", 500)) == (True, "S3 InternalError")
    assert classify(s3_error("AccessDenied", 403)) == (False, "S3 AccessDenied")
    assert classify(s3_error("NoSuchKey", 404)) == (False, "not found")


def test_cli_adds_a_dump_by_its_id_from_a_configured_base(tmp_path, cc, dagster_instance, capsys):
    from assets_defs.cli import main

    server, _ = cc
    config = tmp_path / "c2c.yaml"
    config.write_text(f"commoncrawl_base_url: {server.url}\nfetch_backoff_seconds: 0.001\n")
    data = str(tmp_path / "data")
    assert main(["crawl", "add", DUMP, "--config", str(config), "--data", data]) == 0  # the listing 503s once first
    assert _said(f"1 shard(s), 1 new, source {DUMP}, read from {server.url}") in _said(capsys.readouterr().out)
    assert main(["crawl", "list", "--data", data]) == 0
    assert capsys.readouterr().out.split("\t") == [DUMP, "1 shards", "5 files", DUMP, server.url + "\n"]
    mirror = server.url + "mirror/"  # --base-url moves a crawl; this one lacks the listing
    assert main(["crawl", "add", DUMP, "--base-url", mirror, "--config", str(config), "--data", data]) == 2
    assert _said(f"crawl source not found: '{mirror}crawl-data/{DUMP}/warc.paths.gz'") in _said(capsys.readouterr().out)
    server.always[f"crawl-data/{DUMP}/warc.paths.gz"] = 503
    assert main(["crawl", "add", "again", DUMP, "--config", str(config), "--data", data]) == 2
    assert _said("HTTP 503 (after 8 attempts") in _said(capsys.readouterr().out)
    assert main(["crawl", "add", "web", "--data", data]) == 2
    assert "needs a source" in capsys.readouterr().out


def _said(text: str) -> str:
    """Text without whitespace: rich wraps long lines to the terminal's width."""
    return "".join(text.split())


@pytest.mark.slow
def test_warc_records_asset_reads_a_dump_over_http(tmp_path, cc, dagster_instance):
    """The Dagster path: the shard's files are URLs, a 503 costs a retry with the default policy, a 404 a drop row."""
    from assets_defs.cli import materialize_crawl
    from assets_defs.partitions import register_partitions
    from assets_defs.resources import PipelineConfig

    server, pages = cc
    listing = "".join(f"{PREFIX}/{name}.warc.gz\n" for name in "abd")  # a: two 503s first; d: 404
    server.files[f"crawl-data/{DUMP}/warc.paths.gz"] = gzip.compress(listing.encode())
    settings = PipelineConfig(data_root=str(tmp_path / "data"), commoncrawl_base_url=server.url)
    crawl, _ = settings.registry().add(DUMP, DUMP)
    register_partitions(dagster_instance, DUMP, crawl.shard_keys)
    assert materialize_crawl(dagster_instance, {"settings": settings}, crawl, ["warc_records"]) == []
    kept = settings.store().read("warc_records", DUMP, "00000")
    dropped = settings.store().read("warc_records", DUMP, "00000", dropped=True)
    assert sorted(kept["url"].to_list()) == sorted(p["url"] for name in "ab" for p in pages[name])
    assert dropped.select("url", "reason").rows() == [(f"{server.url}{PREFIX}/d.warc.gz", "missing_file")]
