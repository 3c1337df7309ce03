"""PII redaction with real Presidio, offline: typed placeholders, decoys kept, whole-document Presidio's output."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pipeline.pii import PiiRedactor, drop_decoys, remaining_pii

# The strings planted in the bundled sample, each in a sentence like the one it sits in there.
PLANTED = {
    "jane.doe@example.com": "EMAIL_ADDRESS",
    "(415) 555-0132": "PHONE_NUMBER",
    "marcus.webb@example.org": "EMAIL_ADDRESS",
    "93.184.216.34": "IP_ADDRESS",
    "8.8.8.8": "IP_ADDRESS",
    "2001:4860:4860::8888": "IP_ADDRESS",
    "sam.okafor@example.net": "EMAIL_ADDRESS",
    "+1 415-555-0199": "PHONE_NUMBER",
    "+44 20 7946 0958": "PHONE_NUMBER",
    "eleanor.price@example.co.uk": "EMAIL_ADDRESS",
    "GB82 WEST 1234 5698 7654 32": "IBAN_CODE",
    "maria.gonzalez@example.org": "EMAIL_ADDRESS",
    "536-22-8174": "US_SSN",
    "5500-0000-0000-0004": "CREDIT_CARD",
    "4111 1111 1111 1111": "CREDIT_CARD",
    "robert.king@example.com": "EMAIL_ADDRESS",
}
SENTENCES = [
    "If you have any questions about your plot, write to jane.doe@example.com or call her on (415) 555-0132 in the "
    "evenings.",
    "Marcus is a keen beekeeper and is happy to answer questions at marcus.webb@example.org.",
    "The job runs on a machine with the public address 93.184.216.34, and it resolves names through 8.8.8.8 because "
    "the office resolver has been unreliable.",
    "I also tried forcing IPv6. The resolver at 2001:4860:4860::8888 returns the right record.",
    "Write to me at sam.okafor@example.net, or call +1 415-555-0199 during office hours on the west coast.",
    "The easiest way to reach us is by telephone on +44 20 7946 0958. If nobody answers, leave a message.",
    "For quotes and anything that needs a photograph, write to Eleanor at eleanor.price@example.co.uk.",
    "Customers can pay by bank transfer to our business account, IBAN GB82 WEST 1234 5698 7654 32, with the job "
    "number as the reference.",
    "Maria Gonzalez, shift lead on Tuesdays and Thursdays, can be reached at maria.gonzalez@example.org.",
    "Her check was submitted with social security number 536-22-8174, and the processing fee was paid with the pantry "
    "card, 5500-0000-0000-0004.",
    "Robert King paid his own fee with his card 4111 1111 1111 1111 and asks that reminders go to "
    "robert.king@example.com rather than to his work address.",
]
DECOYS = (
    "The next general meeting will be held in the church hall on 2024-03-15 at seven o'clock. The router's settings "
    "page is at 192.168.1.1. After we upgraded the build server to Python 3.11.2, the uploader moved to version "
    "2.4.6.1 in the same update; it also ships as v1.2.3.4 on the mirror. A test server on 127.0.0.1 works, and so "
    "does the internal address 10.0.0.5.\n"
    "We reopened on 15/03/2024 and have handed out 1,234,567 meals. Loopback is ::1 and the link-local address is "
    "fe80::1ff:fe23:4567:890a.\n"
    "15.4.1.1. Rules for the new member process\n"
    "Install novas==3.1.1.3 (see Section 6.1.2.3); the float 5.666666666666667 and the timestamp 1652342830 are "
    "numbers, not cards or phones."
)


def expected(text: str) -> str:
    for value, kind in PLANTED.items():
        text = text.replace(value, f"<{kind}>")
    return text


def presidio_whole_documents(redactor: PiiRedactor, texts: list[str]) -> list[str]:
    """Plain Presidio: the same AnalyzerEngine over each whole document, the same decoy filter, AnonymizerEngine."""
    from presidio_analyzer import BatchAnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

    anonymizer = AnonymizerEngine()
    results = BatchAnalyzerEngine(redactor.analyzer).analyze_iterator(texts, language="en")
    return [anonymizer.anonymize(t, drop_decoys(t, r)).text for t, r in zip(texts, results)]


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor()


def test_planted_pii_becomes_typed_placeholders(redactor):
    redacted, _ = redactor.redact_batch(SENTENCES)
    for sentence, out in zip(SENTENCES, redacted):
        assert out == expected(sentence)  # the placeholder where the string was, every other byte as it was
    assert redactor.redact(SENTENCES[4]) == (
        "Write to me at <EMAIL_ADDRESS>, or call <PHONE_NUMBER> during office hours on the west coast."
    )


def test_decoys_survive(redactor):
    assert redactor.redact(DECOYS) == DECOYS
    assert remaining_pii(DECOYS) == []


def test_counts_by_entity_type(redactor):
    _, counts = redactor.redact_batch(SENTENCES + [DECOYS])
    assert counts == Counter(PLANTED.values())


def test_remaining_pii_finds_each_planted_string_and_nothing_once_redacted(redactor):
    for sentence in SENTENCES:
        found = remaining_pii(sentence)
        assert found == [(kind, value) for value, kind in PLANTED.items() if value in sentence], sentence
        assert remaining_pii(redactor.redact(sentence)) == []
    assert remaining_pii("<EMAIL_ADDRESS> <PHONE_NUMBER> <IP_ADDRESS> <CREDIT_CARD> <US_SSN> <IBAN_CODE>") == []


def _fuzz_documents(n: int, seed: int = 0) -> list[str]:
    """Lines of words, numbers and separators placed to stress where stretches start and stop."""
    rng = random.Random(seed)
    words = ["the", "and", "on", "call", "ext.", "x", "extension", "or", "by", "Room", "tel:", "at", "no.", "IBAN",
             "fax", "between", "§", "v", "version", "Section", "==", "USD", "%", "$", "é", "int", "#", "anexo", "(",
             ")", "-"]
    numbers = ["2024", "1645", "12", "7", "415", "555-0132", "(415)", "555 0132", "+1", "+44", "20", "7946", "0958",
               "020", "4155550132", "2024-03-15", "15/03/2024", "3.14159", "1,234", "192.168.1.1", "8.8.4.4",
               "1.2.3.4.5", "12:30", "::1", "2a00:1450:4001::200e", "GB82", "WEST", "1234", "5698", "7654", "32",
               "536-22-8174", "4111", "1111", "5500-0000-0000-0004", "a.b@example.com", "x@y", "(415) 555-0132",
               "+44 20 7946 0958", "415-555-0199", "020 7946 0958", "+1 415-555-0199", "+49 30 901820"]
    seps = [" ", " ", " ", "  ", "\t", "\u00a0", ", ", "; ", "/", "-", ".", "", "", ""]
    docs = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(1, 6)):
            parts = [rng.choice(words if rng.random() < 0.45 else numbers) for _ in range(rng.randint(1, 14))]
            lines.append("".join(p + rng.choice(seps) for p in parts))
        docs.append("\n".join(lines))
    return docs


def test_same_output_as_whole_document_presidio(redactor, prose):
    paragraphs = prose.split(". ")
    corpus = [
        # planted sentences inside real prose, one paragraph a line
        "\n\n".join(paragraphs[:3] + [s] + paragraphs[3:6]) for s in SENTENCES
    ] + [
        prose,  # no PII at all
        DECOYS,
        "\n".join(SENTENCES),
        "Readings\n\n"
        + "\n".join(f"{i * 7919 % 9973} | {i * 3.7:.2f} | {1652342830 + i} | 10.0.0.{i}" for i in range(40)),
        "Log: 2024-03-15 10:30:12 sshd[430]: Accepted password for roland from 82.50.72.202 port 5339\n"
        "Contact: +44 20 7946 0958 ext. 204, or (415) 555-0132 x12; fax 020 7946 0959.",
        # a letter touching a number rejects it; an extension belongs to it
        "Tel:415-555-0199, by415-555-0199 or 415-555-0199by; call020 7946 0958 and 020 7946 0958m.\n"
        "Room 12, ext 7946 0958; 415-555-0132 ext. 12r, 415-555-0132 ext. 12 or b+44 20 7946 0958 q\n"
        # a bare digit run is a phone decoy, unless a sign comes before it or an extension after it
        "Dial +14155550132 or (4155550132) or 4155550132 ext. 12, not 4155550132 or 4155550132/12.",
        "",
    ] + _fuzz_documents(150)
    ours, _ = redactor.redact_batch(corpus)
    reference = presidio_whole_documents(redactor, corpus)
    assert ours == reference
    assert sum(o != t for o, t in zip(ours, corpus)) > 30  # the corpus does exercise redaction
    assert ours[len(SENTENCES)] == prose


def test_missing_spacy_model_is_an_error_not_a_download():
    with pytest.raises(OSError, match="'en_core_web_nonexistent' is not installed"):
        PiiRedactor(spacy_model="en_core_web_nonexistent")


def test_named_spacy_pipeline_adds_person_and_location(tmp_path):
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Jane Doe"}, {"label": "GPE", "pattern": "Paris"}])
    nlp.to_disk(tmp_path / "ner")
    ner_redactor = PiiRedactor(spacy_model=str(tmp_path / "ner"))
    redacted, counts = ner_redactor.redact_batch(["Jane Doe moved to Paris; write to jane.doe@example.com."])
    assert redacted == ["<PERSON> moved to <LOCATION>; write to <EMAIL_ADDRESS>."]
    assert counts == Counter({"PERSON": 1, "LOCATION": 1, "EMAIL_ADDRESS": 1})


def test_empty_and_megabyte_texts(redactor, prose):
    assert redactor.redact_batch([]) == ([], Counter())
    assert redactor.redact_batch([""]) == ([""], Counter())
    paragraphs = [prose] * 9 + [SENTENCES[4]]
    big = "\n\n".join(paragraphs * (1_000_000 // len("\n\n".join(paragraphs)) + 1))
    assert len(big) >= 1_000_000
    out, counts = redactor.redact_batch([big])
    assert out[0] == expected(big)
    assert counts["EMAIL_ADDRESS"] == counts["PHONE_NUMBER"] == big.count(SENTENCES[4]) > 100
    one_line = prose.replace("\n", " ") * (1_000_000 // len(prose) + 1) + " Mail jane.doe@example.com."
    assert redactor.redact(one_line) == one_line.replace("jane.doe@example.com", "<EMAIL_ADDRESS>")
