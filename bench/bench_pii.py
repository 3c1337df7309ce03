"""PII redaction throughput: pipeline.pii against plain Presidio with the same recognizers, on identical input.

    .venv/bin/python -m bench.bench_pii [--repeat K]

Input: the bundled sample's English documents (bench.common.english_docs), a paragraph of PII sentences inserted into
one in ten, the list read K times (default 3: ~900 documents). The reference is what Presidio's documentation does:
BatchAnalyzerEngine over whole documents with the same AnalyzerEngine (same recognizers, same offline spaCy pipeline),
the same decoy filter, then AnonymizerEngine per document. Both outputs are checked identical, and ours free of any
PII pattern (remaining_pii), before anything is timed; best of 3 each.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from bench.common import compare, english_docs, save

FRACTION_WITH_PII = 0.1
FIRST_NAMES = ["jane", "marcus", "sam", "eleanor", "maria", "robert", "priya", "tom"]
DOMAINS = ["example.com", "example.org", "example.net", "example.co.uk"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "6011 1111 1111 1117"]
SSNS = ["536-22-8174", "219-09-9999", "457-55-5462"]
IBANS = ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00", "FR14 2004 1010 0505 0001 3M02 606"]


def pii_paragraph(rng: random.Random) -> str:
    """A few sentences of the kind a contact page, a forum post or a volunteer roster holds."""
    name = rng.choice(FIRST_NAMES)
    ip = f"{rng.randint(11, 99)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
    sentences = [
        f"Write to {name}.{rng.choice(FIRST_NAMES)}@{rng.choice(DOMAINS)} or call (415) 555-01{rng.randint(0, 99):02d} "
        "in the evenings.",
        f"The office in London answers on +44 20 7946 0{rng.randint(0, 999):03d}, weekdays from nine.",
        f"The build server has the public address {ip} and resolves names through 8.8.8.8, while the router stays "
        "at 192.168.1.1.",
        f"Her check was submitted with social security number {rng.choice(SSNS)}, and the fee was paid with the "
        f"card {rng.choice(CARDS)}.",
        f"Pay by bank transfer to IBAN {rng.choice(IBANS)}, with your job number as the reference.",
        "We upgraded to Python 3.11.2 and the uploader to version 2.4.6.1 on 2024-03-15.",
    ]
    return " ".join(rng.sample(sentences, rng.randint(2, 4)))


def with_pii(docs: list[str], seed: int = 0) -> list[str]:
    """The documents, a PII paragraph inserted between two paragraphs of every tenth or so."""
    rng = random.Random(seed)
    out = []
    for doc in docs:
        if rng.random() < FRACTION_WITH_PII:
            paragraphs = doc.split("\n\n")
            paragraphs.insert(rng.randrange(len(paragraphs) + 1), pii_paragraph(rng))
            doc = "\n\n".join(paragraphs)
        out.append(doc)
    return out


def presidio_reference(redactor, texts: list[str]) -> list[str]:
    from presidio_analyzer import BatchAnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

    from pipeline.pii import drop_decoys

    anonymizer = AnonymizerEngine()
    results = BatchAnalyzerEngine(redactor.analyzer).analyze_iterator(texts, language="en")
    return [anonymizer.anonymize(t, drop_decoys(t, r)).text for t, r in zip(texts, results)]


def run(repeat: int) -> tuple[list[dict], Counter, int]:
    from pipeline.pii import PiiRedactor, remaining_pii

    docs = with_pii(english_docs()) * repeat
    redactor = PiiRedactor()
    ours, counts = redactor.redact_batch(docs)
    reference = presidio_reference(redactor, docs)
    differing = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
    assert not differing, f"{len(differing)} documents differ from whole-document Presidio, first: {differing[:5]}"
    leaks = [hit for text in ours for hit in remaining_pii(text)]
    assert not leaks, f"PII left after redaction: {leaks[:5]}"
    row = compare(
        "PII redaction",
        lambda: len(redactor.redact_batch(docs)[0]),
        lambda: len(presidio_reference(redactor, docs)),
        "Presidio BatchAnalyzerEngine + AnonymizerEngine (same recognizers)",
    )
    return [row], counts, len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the document list is read")
    args = parser.parse_args()
    rows, counts, n_docs = run(args.repeat)
    print(f"{n_docs} documents; placeholders written: {dict(counts.most_common())}")
    save("pii", rows, repeat=args.repeat, documents=n_docs, placeholders=dict(counts))


if __name__ == "__main__":
    main()
