"""Shared fixtures: real WARC files written with warcio, a scratch data root, a Dagster instance."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

PROSE = (
    "The Debian project is an association of individuals who have made common cause to create a free operating "
    "system. This operating system is called Debian. An operating system is the set of basic programs and "
    "utilities that make your computer run. At the core of an operating system is the kernel. The kernel is the "
    "most fundamental program on the computer and does all the basic housekeeping and lets you start other "
    "programs. Debian systems currently use the Linux kernel or the FreeBSD kernel. Linux is a piece of software "
    "started by Linus Torvalds and supported by thousands of programmers worldwide. However, work is in progress "
    "to provide Debian for other kernels, primarily for the Hurd. The Hurd is a collection of servers that run on "
    "top of a microkernel to implement different features."
)


def html_page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>".encode()


def write_warc(path: Path, records: list[dict], gzip: bool = True) -> Path:
    """records: dicts with url, body (bytes), and optional content_type, status, type ("response"/"revisit")."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gzip)
    for i, r in enumerate(records):
        headers = StatusAndHeaders(
            r.get("status", "200 OK"), [("Content-Type", r.get("content_type", "text/html; charset=utf-8"))], protocol="HTTP/1.1"
        )
        record = writer.create_warc_record(
            r["url"],
            r.get("type", "response"),
            payload=io.BytesIO(r["body"]),
            http_headers=headers,
            warc_headers_dict={"WARC-Date": f"2024-01-{i % 28 + 1:02d}T00:00:00Z"},
        )
        writer.write_record(record)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def prose() -> str:
    return PROSE


@pytest.fixture
def good_page() -> bytes:
    return html_page("About Debian", [PROSE, PROSE.replace("Debian", "the project")])


@pytest.fixture
def dagster_instance(tmp_path, monkeypatch):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """`crawl2chat run` over the whole bundled sample, once per session, in a subprocess as a user runs it.

    Returns the folder holding data/ (outputs) and home/ (DAGSTER_HOME).
    """
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("sample_run")
    (root / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "CRAWL2CHAT_DATA_ROOT": str(root / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "assets_defs.cli", "run"], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "stdout.txt").write_text(done.stdout)
    return root
