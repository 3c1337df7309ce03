"""Builds a few thousand real HTML pages from Debian documentation packages into gzipped WARC files.

The bundled sample (scripts/build_sample_crawl.py) holds ~300 English pages; benchmarks that need more, such as
bench/bench_filter_agreement.py, read these. Every English HTML page of the packages below, unmodified, as a
Common Crawl-style response record (written by build_sample_crawl's `write_warc`). Not committed: the default
output is bench/out/doc_pages/. Deterministic: the same installed packages give byte-identical files.

    apt-get install python3.11-doc debian-handbook debian-reference-en developers-reference debian-faq \\
        maint-guide debian-policy git-doc postgresql-doc-15 python-django-doc sqlite3-doc python-flask-doc \\
        python-requests-doc debian-history
    .venv/bin/python -m scripts.build_doc_pages [--out DIR]

`--missing` prints the packages above that are not installed (`make small` installs them with apt-get).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from pathlib import Path

from scripts.build_sample_crawl import YEAR_START, Page, write_warc

DOC = Path("/usr/share/doc")
# (Debian package, folder of its HTML, the URL its pages are published under)
SOURCES = [
    ("python3.11-doc", DOC / "python3.11/html", "https://docs.python.org/3.11"),
    ("debian-handbook", DOC / "debian-handbook/html/en-US", "https://debian-handbook.info/browse/en-US/stable"),
    ("debian-reference-en", DOC / "debian-reference-en/docs", "https://www.debian.org/doc/manuals/debian-reference"),
    ("developers-reference", DOC / "developers-reference/docs", "https://www.debian.org/doc/manuals/developers-reference"),
    ("debian-faq", DOC / "debian/FAQ", "https://www.debian.org/doc/manuals/debian-faq"),
    ("maint-guide", DOC / "maint-guide/html", "https://www.debian.org/doc/manuals/maint-guide"),
    ("debian-policy", DOC / "debian-policy/policy.html", "https://www.debian.org/doc/debian-policy"),
    ("git-doc", DOC / "git-doc", "https://git-scm.com/docs"),
    ("postgresql-doc-15", DOC / "postgresql-doc-15/html", "https://www.postgresql.org/docs/15"),
    ("python-django-doc", DOC / "python-django-doc/html", "https://docs.djangoproject.com/en/3.2"),
    ("sqlite3-doc", DOC / "sqlite3", "https://www.sqlite.org"),
    ("python-flask-doc", DOC / "python-flask-doc/html", "https://flask.palletsprojects.com/en/2.2.x"),
    ("python-requests-doc", DOC / "python-requests-doc/html", "https://requests.readthedocs.io/en/latest"),
    ("debian-history", DOC / "debian-history/docs", "https://www.debian.org/doc/manuals/project-history"),
]
PAGES_PER_FILE = 500
MAX_PAGE_BYTES = 2 * 1024 * 1024  # Common Crawl truncates at 1 MiB; two whole-book single pages are larger
# "name.fr.html": a translation; only English pages (or pages without a language tag) are taken
_LANGUAGE_TAG = re.compile(r"\.([a-z]{2}(?:[-_][A-Za-z]{2,4})?)\.html$")


def is_english_page(rel: str) -> bool:
    """True for an .html page that is neither a translation nor a Sphinx build folder's file (_static, _modules)."""
    tag = _LANGUAGE_TAG.search(rel)
    return rel.endswith(".html") and not any(part.startswith("_") for part in rel.split("/")) and (
        tag is None or tag.group(1) == "en")


def _has_pages(root: Path) -> bool:
    """True when `root` holds an .html page: sqlite3's folder exists without sqlite3-doc, holding none."""
    return root.is_dir() and next(root.rglob("*.html"), None) is not None


def doc_pages() -> tuple[list[Page], dict[str, int]]:
    """Every English page of the installed SOURCES in sorted path order, and the page count of each package."""
    pages: list[Page] = []
    counts: dict[str, int] = {}
    for package, root, base_url in SOURCES:
        if not _has_pages(root):
            print(f"skipping {package}: {root} is missing (apt-get install {package})", file=sys.stderr)
            continue
        before = len(pages)
        for path in sorted(root.rglob("*.html")):
            rel = path.relative_to(root).as_posix()
            if is_english_page(rel) and path.stat().st_size <= MAX_PAGE_BYTES:
                pages.append(Page(f"{base_url}/{rel}", path.read_bytes()))
        counts[package] = len(pages) - before
    return pages, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/doc_pages"), help="output folder")
    parser.add_argument("--missing", action="store_true", help="print the packages not installed, and stop")
    args = parser.parse_args()
    if args.missing:
        print(" ".join(package for package, root, _ in SOURCES if not _has_pages(root)))
        return
    pages, counts = doc_pages()
    if not pages:
        sys.exit(f"no pages found under {DOC}: install the packages named in {__file__}'s docstring")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("docs-*.warc.gz"):  # a rerun with fewer packages must not leave stale files behind
        old.unlink()
    for start in range(0, len(pages), PAGES_PER_FILE):
        chunk = pages[start : start + PAGES_PER_FILE]
        dates = [YEAR_START + timedelta(minutes=start + i) for i in range(len(chunk))]
        write_warc(args.out / f"docs-{start // PAGES_PER_FILE:05d}.warc.gz", chunk, dates)
    for package, n in counts.items():
        print(f"{package}: {n} pages", file=sys.stderr)
    print(f"{len(pages)} pages in {-(-len(pages) // PAGES_PER_FILE)} files under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
