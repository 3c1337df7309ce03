"""Data-stage throughput against reference tools, side by side in one process on the same WARC files.

    .venv/bin/python -m bench.run_all [--repeat K]      (or: make bench)

Input: the bundled sample's 8 WARC files, read K times (default 4: ~1,500 pages). Each row of the table is one
stage run by us and by the reference on identical input, best of 3; ratio = ours / reference in documents/s.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from bench.common import compare as compare_row
from bench.common import english_docs, pages, sample_files, save


def read_ours(files: list[str]) -> int:
    from pipeline.warc import read_warc

    return sum(b.records.height for f in files for b in read_warc(f))


def read_warcio(files: list[str]) -> int:
    """warcio's ArchiveIterator with the same selection as ours: 200 responses with an HTML content type."""
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    for f in files:
        with open(f, "rb") as fh:
            try:
                for record in ArchiveIterator(fh):
                    if record.rec_type != "response" or record.http_headers is None:
                        continue
                    if record.http_headers.get_statuscode() != "200":
                        continue
                    if not (record.http_headers.get_header("Content-Type") or "").startswith("text/html"):
                        continue
                    record.content_stream().read()
                    n += 1
            except Exception:  # the truncated tail of sample-00007; our reader records it instead
                pass
    return n


def run(repeat: int) -> list[dict]:
    sample = sample_files()
    files = sample * repeat
    rows = []
    steps = tqdm(total=5, desc="benchmarks", unit="bench")

    def compare(name: str, ours: Callable[[], int], ref: Callable[[], int], reference: str, unit: str = "docs/s"):
        rows.append(compare_row(name, ours, ref, reference, unit))
        steps.update()

    compare("WARC reading (HTML responses)", lambda: read_ours(files), lambda: read_warcio(files), "warcio")

    from pipeline.extract import decode_html, extract_text

    raw = pages(sample) * repeat
    decoded = [decode_html(h, c)[0] for h, c in raw]
    import trafilatura

    compare("HTML -> main text", lambda: sum(1 for h in decoded if extract_text(h) is not None),
            lambda: sum(1 for h in decoded if trafilatura.extract(h) is not None or True), "trafilatura defaults")

    from pipeline.langid import _model, identify

    texts = [t for t in (extract_text(h) for h in decoded) if t]
    compare("language ID", lambda: len(identify(texts)),
            lambda: sum(1 for t in texts if _model().predict(t.replace("\n", " "), k=1)), "fastText, one call a doc")

    english = english_docs(raw)
    compare("quality filters (4 rule sets)", lambda: _ours_quality(english), lambda: _datatrove_quality(english),
            "datatrove filters")
    compare("whole chain, WARC -> quality", lambda: _ours_chain(files), lambda: _datatrove_chain(files),
            "datatrove steps", unit="WARC KB/s")
    steps.close()
    return rows


def _ours_quality(texts: list[str]) -> int:
    from pipeline.documents import Document
    from pipeline.filters.base import first_drop_reason
    from pipeline.filters.quality import default_quality_filters

    filters = default_quality_filters()
    return sum(1 for t in texts if first_drop_reason(Document(t, ""), filters) is None or True)


def _datatrove_filters():
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    return [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter()]


def _datatrove_quality(texts: list[str]) -> int:
    from datatrove.data import Document

    filters = _datatrove_filters()
    n = 0
    for i, t in enumerate(texts):
        doc = Document(text=t, id=str(i))
        for f in filters:
            result = f.filter(doc)
            if result is not True and not (isinstance(result, tuple) and result[0]):
                break
        n += 1
    return n


def _ours_chain(files: list[str]) -> int:
    from pipeline.extract import DEFAULT_EXTRACTOR, extract_records
    from pipeline.filters.base import apply_filters
    from pipeline.filters.quality import default_quality_filters
    from pipeline.langid import filter_languages
    from pipeline.url_filter import URLFilter
    from pipeline.warc import read_warc

    url_filter, filters = URLFilter(), default_quality_filters()
    for f in files:
        for batch in read_warc(f):
            records = batch.records
            records = records.filter(url_filter.reasons(records["url"]).is_null())
            docs, _, _ = extract_records(records, "bench", DEFAULT_EXTRACTOR)
            docs, _, _ = filter_languages(docs)
            kept, _ = apply_filters(docs, filters, "quality_filtered")
    return _kilobytes(files)


def _kilobytes(files: list[str]) -> int:
    """The chain rows count WARC input (KB), not documents: datatrove's reader keeps fewer pages of the same files
    (with no WARC-Identified-Payload-Type it sniffs the body with libmagic, which calls the handbook's XHTML
    text/xml and skips it), so documents/s would compare different work."""
    return sum(Path(f).stat().st_size for f in files) // 1024


def _datatrove_chain(files: list[str]) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import URLFilter
    from datatrove.pipeline.readers import WarcReader
    from loguru import logger

    from pipeline.langid import identify

    logger.remove()  # datatrove logs every file it opens

    reader = WarcReader(str(Path(files[0]).parent), glob_pattern="*.warc.gz")
    url_filter, extractor, filters = URLFilter(), Trafilatura(favour_precision=True), _datatrove_filters()
    for name in (Path(f).name for f in files):
        try:
            for doc in reader.read_file(name):
                if url_filter.filter(doc) is not True:
                    continue
                doc.text = extractor.extract(doc.text) or ""
                # datatrove's LanguageFilter fetches its model from the Hub; the same lid.176 model is used instead
                if not doc.text or identify([doc.text])[0][0] != "en":
                    continue
                for f in filters:
                    if f.filter(Document(text=doc.text, id=doc.id)) is not True:
                        break
        except EOFError:  # the truncated gzip member that ends sample-00007: datatrove's reader raises
            pass
    return _kilobytes(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="times each sample file is read")
    args = parser.parse_args()
    save("data_stages", run(args.repeat), repeat=args.repeat)


if __name__ == "__main__":
    main()
