"""Reading crawl files over the network (HTTPS, S3) so that a flaky server costs a retry, not a shard.

Common Crawl answers a busy moment with HTTP 503 (S3: SlowDown) and its CDN drops connections now and then, so
every remote fetch here goes through `with_retries`: transient errors (HTTP 408/429/5xx, S3 SlowDown, a dropped
or timed-out connection, a short body) are retried with exponential backoff and full jitter (AWS's "Exponential
Backoff And Jitter" found full jitter finishes contending clients soonest), bounded by attempts and total time.
Anything else (404, 403, a bad URL, missing credentials) fails at once.

A WARC file is ~1 GB, so `RemoteFile` streams it as a seekable file of range requests, a block at a time with the
next one fetched while this one is parsed, each block retried on its own. When a block still fails, the file ends there for its reader and `failure` says why:
the records before it are kept and the caller records the rest of the file as failed.
"""

from __future__ import annotations

import errno
import functools
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

T = TypeVar("T")
TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_S3_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"})


@dataclass(frozen=True)
class FetchPolicy:
    """How hard to try for one remote file, and how much of it to ask for at once."""

    attempts: int = 8
    max_seconds: float = 600.0  # for one request, all its retries together
    base_delay: float = 1.0
    max_delay: float = 60.0
    block_bytes: int = 8 << 20  # one range request
    timeout_seconds: float = 60.0  # an HTTP connection silent this long is dropped and retried

    def __post_init__(self):
        if self.attempts < 1 or self.max_seconds <= 0 or self.base_delay < 0 or self.block_bytes < 1 or self.timeout_seconds <= 0:
            raise ValueError(
                f"FetchPolicy needs attempts >= 1, max_seconds > 0, base_delay >= 0, block_bytes >= 1, timeout_seconds > 0: {self}"
            )

    def delay(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**retry)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))


class FetchFailed(Exception):
    """A remote read that failed for good: `reason` ("HTTP 503", "S3 SlowDown", ...), after `attempts` tries."""

    def __init__(self, uri: str, reason: str, attempts: int, seconds: float, transient: bool):
        uri = re.sub(r"//[^/@]*@", "//***@", uri)  # a mirror's user:password never reaches a log or a drop row
        self.uri, self.reason, self.attempts, self.seconds, self.transient = uri, reason, attempts, seconds, transient
        tries = f"after {attempts} attempts in {seconds:.1f} s" if transient else "not retried"
        super().__init__(f"{reason} ({tries}) reading {uri}")


def classify(exc: BaseException) -> tuple[bool, str]:
    """(is it worth retrying, a short reason) for an error raised by fsspec's HTTP or S3 file systems."""
    errors = _library_errors()
    if isinstance(exc, FetchFailed):
        return exc.transient, exc.reason
    if isinstance(exc, FileNotFoundError):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, FileNotFoundError):  # fsspec's HTTP info() hides the status
            transient, reason = classify(cause)
            if transient or (isinstance(cause, errors.ClientResponseError) and cause.status != 404):
                return transient, reason
        return False, "not found"
    if isinstance(exc, errors.ClientResponseError):
        return exc.status in TRANSIENT_HTTP, f"HTTP {exc.status}"
    code = _s3_code(exc)
    if code is not None:
        return code in _TRANSIENT_S3_CODES or code.startswith("5"), f"S3 {code}"
    if isinstance(exc, errors.NoCredentialsError):
        return False, "no AWS credentials: S3 reads are signed (outside AWS, read https://data.commoncrawl.org/)"
    if isinstance(exc, PermissionError):
        return False, f"permission denied: {exc}"[:200]
    described = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, (_ShortRead, ConnectionError, TimeoutError, *errors.dropped_connection)):
        return True, described
    if isinstance(exc, OSError) and exc.errno in (errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.EREMOTEIO):
        return True, described  # s3fs maps SlowDown/503 to EBUSY and InternalError to EREMOTEIO
    return False, described


@functools.cache
def _library_errors() -> SimpleNamespace:
    """aiohttp's (fsspec's HTTP) and botocore's (s3fs's) errors, imported when a remote read first fails."""
    import aiohttp
    from botocore import exceptions

    return SimpleNamespace(
        ClientResponseError=aiohttp.ClientResponseError,
        NoCredentialsError=exceptions.NoCredentialsError,
        dropped_connection=(
            aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, exceptions.HTTPClientError,
            exceptions.ResponseStreamingError,
        ),
    )


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs error (s3fs keeps botocore's ClientError as the cause)."""
    for e in (exc, exc.__cause__):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = response["Error"].get("Code")
            return str(code) if code else str(response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return None


class _ShortRead(IOError):
    pass


def with_retries(
    call: Callable[[], T],
    uri: str,
    policy: FetchPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """`call()`, retried on transient errors; FileNotFoundError for a missing file, else FetchFailed."""
    rng = rng or random.Random()
    start = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - classified below; nothing is swallowed
            transient, reason = classify(e)
            elapsed = time.monotonic() - start
            if not transient:
                if reason == "not found":
                    raise FileNotFoundError(f"{uri} not found") from e
                raise FetchFailed(uri, reason, attempt, elapsed, transient=False) from e
            wait = max(policy.delay(attempt - 1, rng), min(policy.max_delay, _retry_after(e)))
            if attempt == policy.attempts or elapsed + wait > policy.max_seconds:
                raise FetchFailed(uri, reason, attempt, elapsed, transient=True) from e
            sleep(wait)
    raise AssertionError("unreachable")


def _retry_after(exc: BaseException) -> float:
    """Seconds a 429/503 asks the client to wait (its Retry-After header), 0 when it does not say."""
    headers = getattr(exc, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):  # an HTTP date: rare enough to fall back on the backoff
        return 0.0


def is_local(uri: str, storage_options: dict | None = None) -> bool:
    fs, _ = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return isinstance(fs, LocalFileSystem)


def _filesystem(uri: str, storage_options: dict | None, policy: FetchPolicy):
    options = dict(storage_options or {})
    if fsspec.utils.get_protocol(uri) in ("http", "https") and "client_kwargs" not in options:
        import aiohttp

        # aiohttp's default waits 5 minutes on a stalled connection; a dropped one is better retried soon
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.timeout_seconds, sock_read=policy.timeout_seconds)
        options["client_kwargs"] = {"timeout": timeout}
    return fsspec.core.url_to_fs(uri, **options)


def fetch_bytes(uri: str, storage_options: dict | None = None, policy: FetchPolicy | None = None) -> bytes:
    """A whole (small) file, such as a warc.paths.gz listing, with retries."""
    policy = policy or FetchPolicy()
    fs, path = _filesystem(uri, storage_options, policy)
    return with_retries(lambda: fs.cat_file(path), uri, policy)


def open_remote(uri: str, storage_options: dict | None = None, policy: FetchPolicy | None = None) -> RemoteFile:
    """A seekable read-only file over range requests. Raises FileNotFoundError or FetchFailed if it cannot start."""
    policy = policy or FetchPolicy()
    fs, path = _filesystem(uri, storage_options, policy)
    size = with_retries(lambda: fs.size(path), uri, policy)
    if size is None:
        raise FetchFailed(uri, "the server gives no Content-Length", 1, 0.0, transient=False)
    return RemoteFile(fs, path, uri, int(size), policy)


class RemoteFile:
    """Reads `size` bytes of a remote file block by block, fetching the next block in the background while the
    current one is parsed. If a block cannot be fetched after retries, the file ends where that block starts, with
    `failure` and `failed_at` set; what came before it can still be read."""

    def __init__(self, fs, path: str, uri: str, size: int, policy: FetchPolicy):
        self.fs, self.path, self.uri, self.size, self.policy = fs, path, uri, size, policy
        self.failure: FetchFailed | None = None
        self.failed_at: int | None = None  # the offset of the block that could not be fetched
        self.requests = 0
        self._pos = 0
        self._block_start = 0
        self._block = b""
        self._closed = False
        self._ahead: tuple[int, Future] | None = None  # (offset, the fetch of the block after the current one)
        self._pool: ThreadPoolExecutor | None = None
        self._closing = threading.Event()

    def read(self, n: int = -1) -> bytes:
        end = self.size if self.failed_at is None else self.failed_at
        if n is not None and n >= 0:
            end = min(end, self._pos + n)
        pieces = []
        while self._pos < end:
            offset = self._pos - self._block_start
            if not 0 <= offset < len(self._block):
                if not self._fetch(self._pos - self._pos % self.policy.block_bytes):
                    break
                offset = self._pos - self._block_start
            piece = self._block[offset : offset + end - self._pos]
            pieces.append(piece)
            self._pos += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _get(self, start: int) -> bytes:
        """One block (`start` a multiple of block_bytes, so a block that failed is never asked for again, and the
        blocks before it, which came through once, still can be), with retries."""
        stop = min(self.size, start + self.policy.block_bytes)

        def get() -> bytes:
            self.requests += 1
            data = self.fs.cat_file(self.path, start=start, end=stop)
            if len(data) > stop - start:  # a server ignoring Range would send the whole file for every block
                raise FetchFailed(self.uri, f"the server ignores Range requests ({len(data)} bytes sent)", 1, 0.0, False)
            if len(data) < stop - start:
                raise _ShortRead(f"short read: {len(data)} of {stop - start} bytes at offset {start}")
            return data

        return with_retries(get, self.uri, self.policy, sleep=self._wait)

    def _wait(self, seconds: float) -> None:
        """A backoff that a close() cuts short, so a fetch ahead never outlives its file by minutes."""
        if self._closing.wait(seconds):
            raise FetchFailed(self.uri, "the file was closed", 1, 0.0, False)

    def _fetch(self, start: int) -> bool:
        try:
            if self._ahead is not None and self._ahead[0] == start:
                block = self._ahead[1].result()
            else:
                block = self._get(start)
        except FetchFailed as e:
            self.failure, self.failed_at = e, start
            return False
        except FileNotFoundError as e:  # the file went away while being read
            self.failure, self.failed_at = FetchFailed(self.uri, "not found", 1, 0.0, False), start
            self.failure.__cause__ = e
            return False
        finally:
            if self._ahead is not None and self._ahead[0] == start:
                self._ahead = None
        self._block, self._block_start = block, start
        following = start + self.policy.block_bytes
        if following < self.size and (self._ahead is None or self._ahead[0] != following):
            # a WARC is read front to back: parsing this block and fetching the next overlap (after a seek back,
            # a fetch further on is dropped; the one worker is never more than a block ahead)
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="remote-file")
            self._ahead = (following, self._pool.submit(self._get, following))
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset} in {self.uri}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._block, self._ahead, self._closed = b"", None, True
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
