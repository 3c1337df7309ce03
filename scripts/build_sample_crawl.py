"""Builds the bundled sample crawl in pipeline/sample_crawl/ from Debian documentation packages.

Eight gzipped WARC files in Common Crawl's layout (warcinfo, then request, response and sometimes metadata per page) of
unmodified pages from the Debian Administrator's Handbook (en-US and translations) and the Python 3.11 docs, plus
planted cases the pipeline must catch: adult URLs, exact and near duplicates, PII, junk, non-HTML and mis-encoded
records, a 20 MB page, a revisit record and a truncated gzip member, each listed with its expected fate in
PLANTED.json. Deterministic: a rerun gives byte-identical files. Needs `apt-get install python3.11-doc debian-handbook`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import random
import re
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.documents import Document
from pipeline.extract import decode_html, extract_text
from pipeline.filters.base import first_drop_reason
from pipeline.filters.quality import default_quality_filters

HANDBOOK = Path("/usr/share/doc/debian-handbook/html")
PYDOCS = Path("/usr/share/doc/python3.11/html")
PNG = PYDOCS / "_static" / "py.png"
N_FILES, N_ENGLISH, PER_LANGUAGE = 8, 280, 8
LANGUAGES = ["fr-FR", "de-DE", "es-ES", "ja-JP", "ru-RU", "pt-BR", "it-IT", "zh-CN"]
PY_SECTIONS = ("tutorial/", "howto/", "faq/", "library/", "reference/", "using/", "extending/", "installing/")
STOPWORDS = {"the", "and", "of", "to", "is", "in", "that", "for", "with", "this", "are", "be", "it"}
YEAR_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
HTML = "text/html; charset=UTF-8"
LATIN1 = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'


@dataclass
class Page:
    url: str
    body: bytes
    content_type: str = HTML  # the HTTP header
    status: str = "200 OK"
    case: str | None = None  # kind of planted case; None for an ordinary page
    expect: str = ""
    expect_stage: str | None = None
    expect_reason: str | None = None
    group: str | None = None
    pii: list[str] = field(default_factory=list)
    decoys: list[str] = field(default_factory=list)
    revisit: bool = False


def prose_words(html: bytes) -> list[str]:
    """Words of the page's paragraphs: <p> (Sphinx) and <div class="para"> (Publican), tags stripped."""
    text = html.decode("utf-8", errors="replace")
    paras = re.findall(r'<(p|div class="para")[\s>](.*?)</(?:p|div)>', text, re.S)
    return re.sub(r"<[^>]*>", " ", " ".join(body for _, body in paras)).split()


def english_share(words: list[str]) -> float:
    """About 1 in 23 characters of English prose belongs to a stop word; translations are partial and mix both."""
    return 23 * sum(w.lower() in STOPWORDS for w in words) / max(sum(len(w) for w in words), 1)


def record_id(name: str, record_type: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{name} {record_type}')}>"


def source_pages(rng: random.Random) -> tuple[list[Page], list[Page]]:
    """Returns (English pages in a seeded random order, the most completely translated handbook pages)."""
    handbook = []
    for path in sorted((HANDBOOK / "en-US").glob("*.html")):
        body = path.read_bytes()
        if len(prose_words(body)) >= 150 and len(gzip.compress(body)) <= 14_000:
            handbook.append(Page(f"https://debian-handbook.info/browse/en-US/stable/{path.name}", body))
    python = []  # (prose words per compressed byte, page): prose-heavy pages first
    for path in sorted(PYDOCS.rglob("*.html")):
        rel, body = path.relative_to(PYDOCS).as_posix(), path.read_bytes()
        size, n_words = len(gzip.compress(body)), len(prose_words(body))
        if rel.startswith(PY_SECTIONS) and n_words >= 400 and size <= 14_000:
            python.append((n_words / size, rel, Page(f"https://docs.python.org/3.11/{rel}", body)))
    python.sort(key=lambda t: (-t[0], t[1]))
    english = handbook + [page for _, _, page in python[: N_ENGLISH - len(handbook)]]
    foreign = []
    for lang in LANGUAGES:
        words = {path.name: prose_words(path.read_bytes()) for path in (HANDBOOK / lang).glob("*.html")}
        ranked = sorted((english_share(w), name) for name, w in words.items() if sum(map(len, w)) >= 1500)
        for _, name in ranked[:PER_LANGUAGE]:
            url = f"https://debian-handbook.info/browse/{lang}/stable/{name}"
            foreign.append(Page(url, (HANDBOOK / lang / name).read_bytes(), case="non_english",
                                expect=f"dropped by the language filter ({lang})", expect_stage="language_filtered"))
    rng.shuffle(english)
    return english, foreign


def html_doc(title: str, text: str, meta: str = '<meta charset="utf-8">', main: str = "") -> str:
    """A small hand-written page: the title and one <p> per blank-line-separated paragraph of `text`, or `main`."""
    main = main or "\n".join([f"<h1>{title}</h1>"] + [f"<p>{' '.join(p.split())}</p>" for p in text.split("\n\n")])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{meta}\n<title>{title}</title>\n</head>\n<body>\n<nav>'
            f'<a href="/">Home</a> | <a href="/about.html">About</a> | <a href="/contact.html">Contact</a></nav>\n'
            f"<main>\n{main}\n</main>\n<footer>{title} &middot; All rights reserved.</footer>\n</body>\n</html>\n")


# Hand-written pages. A line ending in \n ends a paragraph.
PII_PAGES = [  # (url, title, prose, pii strings, decoy strings)
    ("https://riverside-garden-club.example.org/newsletter/2024-spring.html", "Riverside Garden Club Newsletter",
     """Spring has finally arrived at the Riverside Community Garden, and the committee would like to thank everyone who
     turned up for the work day last Saturday. We cleared the old compost bays, repaired the fence along the north
     path and planted two new rows of raspberry canes. The next general meeting will be held in the church hall on
     2024-03-15 at seven o'clock, and as always there will be tea, biscuits and a short talk from one of our members.\n
     Our treasurer, Jane Doe, asks us to remind everyone that annual fees are now due. You can pay in cash at the
     meeting or leave an envelope in the box by the gate. If you have any questions about your plot or your
     membership, write to jane.doe@example.com or call her on (415) 555-0132 in the evenings.\n
     A few members had trouble with the shared wireless network in the tool shed. Tom reset the router, so if your
     phone asks for the password again, the settings page is at 192.168.1.1 and the password is written on the inside
     of the shed door. Finally, a warm welcome to our newest members, Priya and Marcus Webb, who have taken over plot
     14. Marcus is a keen beekeeper and is happy to answer questions at marcus.webb@example.org.""",
     ["jane.doe@example.com", "(415) 555-0132", "marcus.webb@example.org"], ["2024-03-15", "192.168.1.1"]),
    ("https://forum.example.com/t/connection-refused-after-upgrade/4821", "Connection refused after upgrading Python",
     """Hi all, I have been fighting with this for two days and I am hoping someone here has seen it before. After we
     upgraded our build server to Python 3.11.2, the nightly job that uploads reports to our web server started
     failing with a connection refused error. Nothing else changed as far as I know, apart from our internal uploader
     package, which moved to version 2.4.6.1 in the same update.\n
     The job runs on a machine with the public address 93.184.216.34, and it resolves names through 8.8.8.8 because
     the office resolver has been unreliable for months. When I run the script by hand against a test server on
     127.0.0.1 it works perfectly. From a laptop inside the office network, talking to the internal address 10.0.0.5,
     it also works.\n
     I also tried forcing IPv6. The resolver at 2001:4860:4860::8888 returns the right record, so I do not think name
     resolution is the problem. I have checked the firewall rules twice, restarted the service, rebuilt the virtual
     environment from scratch and pinned the old version of the uploader, without any luck.\n
     If anyone wants the full logs I am happy to send them, they are too long to paste here. Write to me at
     sam.okafor@example.net, or call +1 415-555-0199 during office hours on the west coast.""",
     ["93.184.216.34", "8.8.8.8", "2001:4860:4860::8888", "sam.okafor@example.net", "+1 415-555-0199"],
     ["Python 3.11.2", "version 2.4.6.1", "127.0.0.1", "10.0.0.5"]),
    ("https://www.harbourlanecycles.example.co.uk/contact.html", "Contact Harbour Lane Cycles",
     """Harbour Lane Cycles is a small, family-run bicycle repair shop near the old docks. We have been fixing bikes for
     commuters, couriers and weekend riders for more than twenty years, and we reopened after a long refurbishment on
     15/03/2024 with a bigger workshop and a proper waiting area with decent coffee.\n
     The workshop is open from Tuesday to Saturday, nine in the morning until half past five. You are welcome to drop
     in without an appointment for punctures, brake adjustments and other small jobs, which we usually finish the
     same day. For a full service or a wheel build, please book a slot so that we can order the parts in time.\n
     The easiest way to reach us is by telephone on +44 20 7946 0958. If nobody answers we are probably busy with a
     customer, so leave a message and we will call you back. For quotes and anything that needs a photograph, write
     to Eleanor, who runs the front desk, at eleanor.price@example.co.uk.\n
     Customers who prefer to pay for larger jobs by bank transfer can use our business account, IBAN GB82 WEST 1234
     5698 7654 32, with your job number as the reference. Parking on the lane is limited, so if you come by car, the
     public car park behind the library is the better option.""",
     ["+44 20 7946 0958", "eleanor.price@example.co.uk", "GB82 WEST 1234 5698 7654 32"], ["15/03/2024"]),
    ("https://eastside-pantry.example.org/volunteers/roster.html", "Eastside Pantry Volunteer Roster",
     """Thank you to everyone who signed up to volunteer at the Eastside Pantry this season. Since the pantry opened,
     volunteers like you have helped us hand out 1,234,567 meals to families in the neighbourhood, and the spring
     food drive starting on 15/03/2024 is going to be our busiest yet.\n
     Before your first shift, every volunteer who works with children has to pass a background check. Please look
     through the details below and tell us straight away if anything is wrong, because the forms go to the county
     office at the end of the week.\n
     Maria Gonzalez, shift lead on Tuesdays and Thursdays, can be reached at maria.gonzalez@example.org. Her check
     was submitted with social security number 536-22-8174, and the processing fee was paid with the pantry card,
     5500-0000-0000-0004. Robert King, our Saturday driver, paid his own fee with his card 4111 1111 1111 1111 and
     asks that reminders go to robert.king@example.com rather than to his work address.\n
     The sign-up kiosk in the hall runs on the old office computer, which we reach at 10.0.0.5 from the back room;
     if it freezes, leave a note for the coordinator. Shifts last three hours, closed shoes are required, and there
     is always soup for volunteers at the end of the day.""",
     ["maria.gonzalez@example.org", "536-22-8174", "5500-0000-0000-0004", "4111 1111 1111 1111",
      "robert.king@example.com"], ["1,234,567", "15/03/2024", "10.0.0.5"]),
]

SPAM = [  # (url, stage that drops it, reason there)
    ("https://www.pornhub.com/view_video.php?viewkey=ph5f3a", "url_filtered", "adult:domain"),
    ("https://cheap-deals.example.com/xxx/free-clips.html", "url_filtered", "adult:hard_blacklisted"),
    # FineWeb's lists hold no "bestpornsite" ("porn" is a whole-word ban, its subwords are phrases): the page's
    # repetitive text is what drops it
    ("https://www.bestpornsite.example.org/index.html", "quality_filtered", None),
    ("https://dating.example.net/sexy-nude-escort-girls.html", "url_filtered", "adult:soft_blacklisted"),
]

LOREM = """Welcome to the demo site of Sunrise, a clean and simple theme for small business websites. This page
shows how headings, paragraphs and lists look before you add your own content, so replace this text to publish.\n
The theme works on phones, tablets and desktop screens, and you can change the colours and the fonts in the settings
panel. Every block on this page can be moved, copied or removed with the page editor.\n
Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna.\n
If you need help with the theme, read the documentation or ask a question in the support forum, where the people who
built it answer questions every working day."""

MOVED = """This page is kept for visitors who arrive from old links. The café on the corner — the one with the green
awning — has moved two streets north, and the new address, the opening hours and the “pay what you can” Tuesday
lunches are listed below. We’re grateful to everyone who helped carry chairs, crockery and the old piano. Our menu
still has crème brûlée, pâté on toast, a soupçon of garlic in everything, and coffee for €2 – though the élève
from the cookery school now makes the croissants, and the déjà vu you feel on a Sunday morning is entirely normal.
Thank you for twelve happy years on this corner, and see you soon at the new one."""


def text_cases(rng: random.Random) -> list[Page]:
    """Pages for the URL, PII, language and quality filters."""
    spam = html_doc("Free videos", "Hot singles near you! Free clips, no sign-up, click here now!").encode()
    pages = [Page(url, spam, case="spam_url", expect=f"dropped at {stage}", expect_stage=stage, expect_reason=reason)
             for url, stage, reason in SPAM]
    for url, title, text, pii, decoys in PII_PAGES:
        assert all(s in " ".join(text.split()) for s in pii + decoys), url
        pages.append(Page(url, html_doc(title, text).encode(), case="pii", pii=pii, decoys=decoys,
                          expect="kept; every pii string redacted, every decoy left as it is"))
    menu = "".join(f'<li><a href="/{w[0]}/{i}.html">{w} {i}</a></li>\n' for i, w in enumerate(["Shop", "Blog"] * 20))
    readings = "\n\n".join(f"{rng.randrange(9999)} | {rng.random() * 1e4:.2f} | ### | {rng.randrange(99)}% | >> "
                            f"{rng.randrange(999)} <<" for _ in range(80))
    junk = {  # name: (html, stage, what happens)
        "lorem_ipsum": (html_doc("Sunrise theme demo", LOREM), "quality_filtered", "English with a lorem ipsum "
                        "paragraph: dropped by the C4 lorem-ipsum rule"),
        "navigation_only": (html_doc("Menu", "", main=f"<nav><ul>\n{menu}</ul></nav>"), "extracted_text", "40 links, "
                            "no prose: main-content extraction finds no text (trafilatura keeps the link text)"),
        "repeated_line": (html_doc("Moved", "\n\n".join(["This page has moved, please update your bookmarks."] * 50)),
                          "quality_filtered", "one line 50 times: dropped by the Gopher repetition filter"),
        "symbols_numbers": (html_doc("Sensor readings", f"Hourly readings from the roof station.\n\n{readings}"),
                            "language_filtered", "numbers and symbols: language ID confidence far below any threshold "
                            "(else the Gopher symbol and alpha-word rules drop it)"),
    }
    for name, (body, stage, expect) in junk.items():
        pages.append(Page(f"https://junk.example.com/{name.replace('_', '-')}.html", body.encode(),
                          case=f"junk_{name}", expect=expect, expect_stage=stage))
    return pages


def record_cases() -> list[Page]:
    """Records the reader has to drop, skip or decode with care."""
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> "
           b"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    big = b"<html><body>\n" + b"<p>All work and no play makes Jack a dull boy.</p>\n" * 400_000 + b"</body></html>\n"
    dropped = [  # (url, body, content type, HTTP status, reason)
        ("https://docs.python.org/3.11/_static/py.png", PNG.read_bytes(), "image/png", "200 OK", "not_html"),
        ("https://debian-handbook.info/download/sample.pdf", pdf, "application/pdf", "200 OK", "not_html"),
        ("https://api.example.com/v1/packages.json", b'{"apt": "2.6.1"}', "application/json", "200 OK", "not_html"),
        ("https://forum.example.com/archive/everything.html", big, HTML, "200 OK", "too_large"),  # 20 MB
        ("https://docs.python.org/3.11/library/nothing.html", html_doc("Not Found", "No such page.").encode(), HTML, "404 Not Found",
         "http_status")]
    pages = [Page(url, body, ctype, status, case=reason, expect="dropped by the reader", expect_stage="warc_records",
                  expect_reason=reason) for url, body, ctype, status, reason in dropped]
    latin = MOVED.translate(str.maketrans({"—": "-", "–": "-", "“": '"', "”": '"', "’": "'", "€": "EUR "}))
    broken = html_doc("We have moved", MOVED).encode()
    for word, bad in [(b"green", b"gr\xffeen"), (b"piano", b"pia\xc3(no"), (b"Sunday", b"Sun\x80day")]:
        broken = broken.replace(word, bad)
    kept = [  # (url, body, content type, case, expectation)
        ("https://www.cafe-lumiere.example.com/moved.html", html_doc("We have moved", MOVED, meta="").encode("cp1252"),
         "text/html; charset=utf-8", "charset_mislabelled", "kept, decoded as cp1252 (the header says utf-8)"),
        ("http://www.vieux-port.example.fr/en/moved.html", html_doc("We have moved", latin, LATIN1).encode("latin-1"),
         "text/html", "charset_meta_latin1", "kept, decoded as iso-8859-1 as its <meta> says"),
        ("https://www.cafe-lumiere.example.com/en/moved.html", broken, "text/html; charset=utf-8", "invalid_utf8",
         "kept, decoded as utf-8 with 3 replacement characters"),
        ("https://www.cafe-lumiere.example.com/old/moved.html", html_doc("We have moved", MOVED, meta="").encode(),
         "text/html; charset=x-no-such-charset", "unknown_charset", "kept: the unknown charset is ignored and the body "
         "(utf-8) decoded by detection")]
    # one text in four encodings: once decoded they are duplicates, and dedup keeps the first in file order
    pages += [Page(url, body, ctype, case=case, group="charset-1", expect=expect if i == 0 else
                   f"{expect.replace('kept', 'decoded', 1)}; then dropped as a duplicate of the first 'moved' page",
                   expect_stage=None if i == 0 else "deduplicated")
              for i, (url, body, ctype, case, expect) in enumerate(kept)]
    return pages + [Page("https://docs.python.org/3.11/index.html", (PYDOCS / "index.html").read_bytes(), revisit=True,
                         case="revisit", expect="skipped: not a response, so neither a row nor an exclusion")]


def passes_quality(body: bytes) -> bool:
    """True if the page's main text passes the quality filters, so its duplicates reach the dedup stage."""
    text = extract_text(decode_html(body, "utf-8")[0])
    return first_drop_reason(Document(text=text, id=""), default_quality_filters()) is None


def duplicate_cases(english: list[Page], rng: random.Random, files: list[list[Page]]) -> None:
    """Moves 6 pages out of `english` into `files` with copies: each original comes before its copies in file order."""
    kept = "kept (its group's first URL in file order)"
    for g, n_copies in enumerate([1, 2, 3]):  # exact duplicates on mirror hosts: originals in files 0-2
        original = next(p for p in reversed(english) if passes_quality(p.body))
        english.remove(original)
        original.case, original.group, original.expect = "exact_duplicate", f"exact-{g + 1}", kept
        files[g].append(original)
        site, path = original.url.split("/", 3)[2:]
        for k in range(n_copies):
            mirror = f"https://mirror{k + 1}.example.org/{'python-docs' if 'python' in site else 'debian-handbook'}"
            files[g + 2 * k + 1].append(Page(f"{mirror}/{path}", original.body, case="exact_duplicate",
                                             group=original.group, expect="dropped as an exact duplicate",
                                             expect_stage="deduplicated"))
    for g, n_copies in enumerate([1, 2, 1]):  # near duplicates: originals in files 3-5, copies in 5-7
        original = next(
            p for p in reversed(english)
            if "python.org" in p.url and len(prose_words(p.body)) > 1200 and passes_quality(p.body)
        )
        english.remove(original)
        original.case, original.group, original.expect = "near_duplicate", f"near-{g + 1}", kept
        files[g + 3].append(original)
        n_words = len(prose_words(original.body))
        for k in range(n_copies):
            body, n = edit_words(original.body.decode(), rng, n_words // 100)
            files[g + 5 + k].append(Page(f"https://python-docs.example{k + 1}.net/{original.url.split('/', 3)[3]}",
                                         body.encode(), case="near_duplicate", group=original.group,
                                         expect_stage="deduplicated", expect=f"dropped as a near duplicate ({n} of "
                                         f"{n_words} prose words replaced, 'Last updated' line changed)"))


def edit_words(html: str, rng: random.Random, n: int) -> tuple[str, int]:
    """Replaces `n` random words of the page's <p> text and changes its 'Last updated' line."""
    parts = re.split(r"(<[^>]*>)", html)
    candidates, in_p = [], False
    for i, part in enumerate(parts):
        if part.startswith("<"):
            in_p = bool(re.match(r"<p[\s>]", part)) or (in_p and not part.startswith("</p"))
        elif in_p and 'class="pre"' not in parts[i - 1]:  # leave inline code alone
            candidates += [(i, m.start(), m.end()) for m in re.finditer(r"(?<=\s)[a-z]{5,}(?=[\s,.;:])", part)]
    for i, start, end in sorted(rng.sample(candidates, n), reverse=True):
        new = rng.choice([w for w in ("usually", "simply", "really", "rather", "mostly") if w != parts[i][start:end]])
        parts[i] = parts[i][:start] + new + parts[i][end:]
    return re.sub(r"Last updated on \w+ \d+, \d{4}", "Last updated on March 15, 2024", "".join(parts)), n


def page_records(writer: WARCWriter, page: Page, when: datetime, info_id: str) -> list[ArcWarcRecord]:
    """The request, response (or revisit) and, for some pages, metadata records of one page."""
    date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    host, path = re.match(r"https?://([^/]+)(/.*)?", page.url).groups()
    common = {"WARC-Date": date, "WARC-Warcinfo-ID": info_id}
    resp_type, req_id = "revisit" if page.revisit else "response", record_id(page.url, "request")
    request = StatusAndHeaders(f"GET {path or '/'} HTTP/1.1", [
        ("Host", host), ("Accept-Encoding", "br,gzip"), ("Accept-Language", "en-US,en;q=0.5"),
        ("User-Agent", "CCBot/2.0 (https://commoncrawl.org/faq/)"), ("Accept", "text/html,*/*;q=0.8")])
    records = [writer.create_warc_record(page.url, "request", warc_headers_dict={
        "WARC-Record-ID": req_id, **common}, http_headers=request)]
    http = StatusAndHeaders(page.status, [("Date", format_datetime(when, usegmt=True)), ("Server", "nginx"),
                                          ("Content-Type", page.content_type), ("Content-Length", str(len(page.body))),
                                          ("Connection", "close")], protocol="HTTP/1.1")
    ip = f"198.51.100.{int(hashlib.sha1(host.encode()).hexdigest(), 16) % 250 + 1}"
    headers = {"WARC-Record-ID": record_id(page.url, resp_type), **common, "WARC-IP-Address": ip,
               "WARC-Concurrent-To": req_id}
    if page.revisit:  # the page was unchanged since a capture in an earlier crawl
        headers |= {"WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest",
                    "WARC-Refers-To-Target-URI": page.url, "WARC-Refers-To-Date": "2023-11-28T06:41:09Z",
                    "WARC-Payload-Digest": "sha1:" + base64.b32encode(hashlib.sha1(page.body).digest()).decode()}
        return records + [writer.create_warc_record(page.url, "revisit", warc_headers_dict=headers, http_headers=http)]
    records.append(writer.create_warc_record(page.url, "response", payload=io.BytesIO(page.body),
                                             length=len(page.body), warc_headers_dict=headers, http_headers=http))
    url_hash = int(hashlib.sha1(page.url.encode()).hexdigest(), 16)
    if url_hash % 3 == 0 and page.case is None:  # Common Crawl's metadata records, for some pages
        records.append(fields_record(writer, page.url, "metadata", {"WARC-Record-ID": record_id(
            page.url, "metadata"), **common, "WARC-Concurrent-To": headers["WARC-Record-ID"]},
            f"fetchTimeMs: {url_hash % 900 + 40}\r\ncharset-detected: UTF-8\r\n"))
    return records


def fields_record(writer: WARCWriter, url: str, record_type: str, headers: dict, fields: str) -> ArcWarcRecord:
    """A warcinfo or metadata record: `fields` as application/warc-fields."""
    payload = fields.encode()
    return writer.create_warc_record(url, record_type, payload=io.BytesIO(payload), length=len(payload),
                                     warc_content_type="application/warc-fields", warc_headers_dict=headers)


def write_warc(path: Path, pages: list[Page], dates: list[datetime], truncated: Page | None = None) -> int:
    """Writes one WARC file, one gzip member per record, and returns the number of whole records.

    `truncated` goes last, cut to the first 60% of its gzip member, as a crawler killed mid-write leaves it."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    info_id = record_id(path.name, "warcinfo")
    records = [fields_record(writer, "", "warcinfo", {"WARC-Record-ID": info_id, "WARC-Filename": path.name,
                                                       "WARC-Date": dates[0].strftime("%Y-%m-%dT%H:%M:%SZ")},
                             "isPartOf: crawl2chat-sample-2024\r\npublisher: crawl2chat\r\nformat: WARC File Format "
                             "1.0\r\ndescription: built by scripts/build_sample_crawl.py from Debian docs\r\n")]
    for page, when in zip(pages, dates):
        records += page_records(writer, page, when, info_id)
    for record in records:
        writer.write_record(record)
    if truncated:
        start = buffer.tell()
        writer.write_record(page_records(writer, truncated, dates[-1] + timedelta(seconds=7), info_id)[1])
        buffer.truncate(start + (buffer.tell() - start) * 6 // 10)
    path.write_bytes(buffer.getvalue())
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "pipeline" / "sample_crawl",
                        help="output folder (default: pipeline/sample_crawl)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random choice (default: 2024)")
    args = parser.parse_args()
    if not (HANDBOOK / "en-US").is_dir() or not (PYDOCS / "tutorial").is_dir() or not PNG.is_file():
        sys.exit(f"missing {HANDBOOK} or {PYDOCS}: run `apt-get install python3.11-doc debian-handbook` first")
    rng = random.Random(args.seed)
    english, foreign = source_pages(rng)
    files: list[list[Page]] = [[] for _ in range(N_FILES)]
    duplicate_cases(english, rng, files)
    ordinary = english + foreign
    rng.shuffle(ordinary)
    for i, page in enumerate(text_cases(rng) + record_cases() + ordinary):  # round-robin over the files
        files[i % N_FILES].append(page)
    source = next(p for p in english if "docs.python.org" in p.url)  # its 3.12 twin is cut short in the last file
    truncated = Page(source.url.replace("/3.11/", "/3.12/"), source.body, case="truncated",
                     expect="the file's earlier records read; this one is recorded as truncated",
                     expect_stage="warc_records", expect_reason="truncated")
    args.out.mkdir(parents=True, exist_ok=True)
    cases, keys = [], ["case", "expect", "expect_stage", "expect_reason", "group", "pii", "decoys"]
    for i, pages in enumerate(files):
        rng.shuffle(pages)
        start = YEAR_START + timedelta(days=45 * i)
        dates = sorted(start + timedelta(seconds=rng.randrange(44 * 86400)) for _ in pages)
        name = f"sample-{i:05d}.warc.gz"
        n_records = write_warc(args.out / name, pages, dates, truncated if i == N_FILES - 1 else None)
        pages += [truncated] if i == N_FILES - 1 else []
        cases += [{"url": p.url, "file": name} | {k: getattr(p, k) for k in keys} for p in pages if p.case]
        size = (args.out / name).stat().st_size
        print(f"{name}: {len(pages)} pages, {n_records} records, {size // 1024} KiB", file=sys.stderr)
    (args.out / "PLANTED.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
