"""PII redaction with Presidio, offline: e-mails, phones, public IPs, cards, SSNs and IBANs become typed placeholders.

Presidio's stock AnalyzerEngine loads en_core_web_lg (downloading it if missing) and fetches the public suffix list
for its e-mail check. Here the NLP engine wraps `spacy.blank("en")` (a tokenizer, no model) and the e-mail check reads
tldextract's bundled suffix list, so nothing is fetched. PERSON/LOCATION are found only when an installed spaCy model is
named; a missing one is an error, never a download.

Speed without changing the output. No recognizer match holds a newline (the patterns allow spaces and tabs at most,
phonenumbers' separators exclude "\\n"), and the anonymizer merges only entities separated by spaces, so a document
can be analysed piecewise. The pattern recognizers see only the lines that hold what one of their matches needs: "@"
(e-mail), "::" or hex:hex (IPv6), AA00 (IBAN), a dotted quad (IPv4), 9+ digits joined by separators (SSN, card).
The phone recognizer, the slow one (phonenumbers parses every digit group once per region), sees only the runs of
digits that could be a number (>= 5 digits, or a 4-digit German pager number: lengths and patterns come from
phonenumbers' metadata) and could give a match that is not a decoy (a bare digit run or a dotted quad with no sign
before and no extension after gives only decoys), each widened on both sides to an ASCII letter that phonenumbers'
candidate pattern cannot hold ("ext", "x" and "anexo" can be part of a number; "r" cannot), that letter included so
the matcher still sees what touches the number. The stretches are joined with "\\n" into texts of a few thousand
characters, analysed with the same AnalyzerEngine and shifted back. A blank pipeline has no lemmas, so Presidio's
context-word boost never fires and a score does not depend on text outside the stretch. tests/pipeline/test_pii.py
checks the output equals whole-document Presidio's. (A document with more than 65,535 failed phone candidates
exhausts phonenumbers' per-text budget there, and not here.)

Configuration decisions (each one also applies to the whole-document reference):
- PhoneRecognizer: Presidio's default regions; leniency STRICT_GROUPING (digits grouped as the region writes them),
  which drops IPs, ISBNs and dotted decimals that the default VALID leniency takes for phones in the bundled sample;
  score 0.6 instead of 0.4: Presidio's 0.4 expects a context word ("phone", "call") to lift it over 0.5, and a blank
  pipeline has no lemmas to find one. A number phonenumbers validated against a numbering plan is as strong as a
  well-formed IP, which Presidio scores 0.6.
- At the 0.5 threshold the SSN recognizer keeps only its "medium" pattern (ddd-dd-dddd with one separator, 0.5); its
  "very weak" ones (9 bare digits, ddddd-dddd, 0.05) would need a context boost.
- Decoys dropped after analysis (`is_decoy`, shared by `remaining_pii`): a number (IP, phone, card, SSN) that is a
  fragment of a longer dotted number ("15.4.1.3.1", "5.666666666666667"); IPs that are not public (private, loopback,
  link-local, reserved, documentation; for IPv6 also outside the global-unicast block 2000::/3, so a "[1::2]" slice
  stays), a dotted quad after a version word or a package pin ("version 2.4.6.1", "novas==3.1.1.3", "Section 6.1.2.3")
  or numbering a heading ("15.4.1.1. Rules"); phones written as one bare digit run (Unix times, 2**31, int-encoded IPs:
  every such match in the sample) or shaped like a date or a dotted quad.
"""

from __future__ import annotations

import ipaddress
import re
import string
from bisect import bisect_right
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import phonenumbers

# phonenumbers' own definitions (private names), so the stretches follow the library instead of a copy of it
from phonenumbers.phonenumbermatcher import _PATTERN as _PHONENUMBERS_CANDIDATE
from phonenumbers.phonenumberutil import _PLUS_CHARS, _VALID_PUNCTUATION, PhoneMetadata

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult

DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")
NER_ENTITIES = ("PERSON", "LOCATION")
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio PhoneRecognizer's defaults
PHONE_LENIENCY = phonenumbers.Leniency.STRICT_GROUPING
PHONE_SCORE = 0.6
CHUNK_CHARS = 5_000  # per analyze() call: Presidio's context step walks all tokens once per finding


def _build_analyzer(nlp, score_threshold: float, ner: bool = False) -> AnalyzerEngine:
    """Presidio's AnalyzerEngine on an already-loaded spaCy pipeline, with the recognizers and settings above."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer, the domain checked on tldextract's bundled suffix list, not a fetched one."""

        def validate_result(self, pattern_text: str) -> bool:
            return _has_public_suffix(pattern_text)

    class ValidatedPhoneRecognizer(PhoneRecognizer):
        SCORE = PHONE_SCORE

    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        OfflineEmailRecognizer(),
        ValidatedPhoneRecognizer(supported_regions=PHONE_REGIONS, leniency=PHONE_LENIENCY),
        IpRecognizer(),
        CreditCardRecognizer(),
        UsSsnRecognizer(),
        IbanRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    if ner:
        registry.add_recognizer(SpacyRecognizer(supported_entities=list(NER_ENTITIES)))
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": nlp.meta.get("name", "blank")}])
    engine.nlp = {"en": nlp}  # loaded already, so Presidio's load() - which downloads a missing model - never runs
    return AnalyzerEngine(registry=registry, nlp_engine=engine, default_score_threshold=score_threshold)


@lru_cache(maxsize=1)
def _tld_extract():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the suffix list in the wheel, no fetch


def _has_public_suffix(text: str) -> bool:
    return _tld_extract()(text).fqdn != ""


def _load_spacy_model(name: str):
    import spacy

    if not (spacy.util.is_package(name) or Path(name).exists()):
        raise OSError(
            f"spaCy model {name!r} is not installed; install its package first - models are never downloaded at run "
            "time"
        )
    return spacy.load(name)


# --- where a finding can be ---------------------------------------------------------------------------------------

_PHONE_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip", "pager",
                "uan", "voicemail")


@lru_cache(maxsize=1)
def _phone_digit_rule() -> tuple[int, dict[int, re.Pattern]]:
    """(k, short): a phone match holds >= k digits, or a run of n < k digits that fullmatches short[n].

    With "+" or an international prefix a number holds a country code and a national number at least as long as the
    shortest any region allows; a national number of PHONE_REGIONS is written with all its digits (a national prefix
    only adds some). Every length and pattern comes from phonenumbers' metadata.
    """
    metas = [PhoneMetadata.metadata_for_region(r) for r in phonenumbers.SUPPORTED_REGIONS]
    metas += [PhoneMetadata.metadata_for_nongeo_region(c) for c in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS]
    k = 1 + min(n for m in metas if m is not None for n in m.general_desc.possible_length if n > 0)
    short: dict[int, list[str]] = {}
    for region in PHONE_REGIONS:
        meta = PhoneMetadata.metadata_for_region(region)
        general = [n for n in meta.general_desc.possible_length if n > 0]
        if meta.national_prefix_transform_rule:  # parsing may rewrite its digits: only its lengths bound them
            k = min(k, *general)
        for desc in (getattr(meta, name) for name in _PHONE_TYPES):
            if desc is not None and desc.national_number_pattern:
                for n in [n for n in desc.possible_length if n > 0] or general:
                    if n < k:
                        short.setdefault(n, []).append(desc.national_number_pattern)
    return k, {n: re.compile("|".join(f"(?:{p})" for p in patterns)) for n, patterns in short.items() if n < k}


def _could_be_phone(run: str) -> bool:
    k, short = _phone_digit_rule()
    digits = phonenumbers.normalize_digits_only(run)
    if len(digits) >= k:
        return True
    return any(p.fullmatch(digits, i, i + n) for n, p in short.items() for i in range(len(digits) - n + 1))


_JOINER = f"[{_VALID_PUNCTUATION}{_PLUS_CHARS}]*"  # what phonenumbers accepts between digits; never "\\n"
_PATTERN_LINE = re.compile(
    "[@:0-9]"  # each need below is found at (or just after) one of these; a one-class start keeps the scan fast
    "(?:(?<=@)"  # e-mail
    "|(?<=:)(?::|(?<=[0-9a-fA-F]:)[0-9a-fA-F])"  # "::" or hex:hex: every IPv6 pattern, IPv4-mapped included
    "|(?<=[A-Z]{2}[0-9])[0-9]"  # IBAN country code and check digits (its pattern is case-sensitive)
    r"|(?<=[0-9])[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"  # IPv4
    rf"|(?<=[0-9])(?:{_JOINER}[0-9]){{8,}})"  # SSN (9 digits, separators "- .") and card (13+, separators "- ")
)
# ASCII letters that phonenumbers' candidate pattern cannot match (it spells "ext", "anexo", "int", "x", "\\d", "\\t")
_CUT_LETTERS = "".join(c for c in string.ascii_letters if c.lower() not in _PHONENUMBERS_CANDIDATE.pattern.lower())
_CUT = re.compile(f"[{_CUT_LETTERS}\n]")


@lru_cache(maxsize=1)
def _phone_run() -> re.Pattern:
    k, short = _phone_digit_rule()
    return re.compile(rf"\d(?:{_JOINER}\d){{{min(k, *short) - 1},}}")


def pattern_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of the runs of consecutive lines where a pattern recognizer may match; "\\n" never included."""
    spans, pos = [], 0
    while (m := _PATTERN_LINE.search(text, pos)) is not None:
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        if spans and spans[-1][1] + 1 == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        pos = end + 1
    return spans


_LEAD_BEFORE = re.compile(rf"(?:[(\[\uFF08\uFF3B{_PLUS_CHARS}][{_VALID_PUNCTUATION}]{{0,4}}){{1,2}}\Z")


def _only_decoy_phones(text: str, run: re.Match) -> bool:
    """True if whatever phone the run holds is a decoy: a bare digit run or a dotted quad (any part of it is a bare
    run or a fragment) that phonenumbers' candidate pattern takes as it stands - no sign or bracket before it, no
    extension after it."""
    value = run.group()
    if not (value.isdigit() or _DOTTED_QUAD.fullmatch(value)):
        return False
    if _LEAD_BEFORE.search(text, max(0, run.start() - 10), run.start()):
        return False
    candidate = _PHONENUMBERS_CANDIDATE.match(text, run.start())
    return candidate is not None and candidate.end() == run.end()


def phone_stretches(text: str) -> list[tuple[int, int]]:
    """(start, end) of what the phone recognizer must see: each digit run that could be a number, widened to the
    nearest cut letter on either side (included) or to the line's end (the "\\n" excluded)."""
    spans: list[tuple[int, int]] = []
    for m in _phone_run().finditer(text):
        floor = spans[-1][1] if spans else 0
        if m.start() < floor or not _could_be_phone(m.group()) or _only_decoy_phones(text, m):
            continue
        start = m.start()
        while start > floor and not _CUT.match(text, start - 1):
            start -= 1
        if start > 0 and text[start - 1] != "\n" and _CUT.match(text, start - 1):
            start -= 1
        cut = _CUT.search(text, m.end())
        end = len(text) if cut is None else cut.start() + (text[cut.start()] != "\n")
        if spans and start <= floor:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


# --- what is not PII ----------------------------------------------------------------------------------------------

_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_VERSION_BEFORE = re.compile(  # a version word, a section mark, "name-" or a pin ("==", ">=") right before
    r"(?:\b(?:version|ver|v|release|rel|build|firmware|revision|rev|section|chapter)\.?\s*|§\s*|[A-Za-z][-_]|[=<>~!]=)"
    r"\Z",
    re.IGNORECASE,
)
_DATE_SHAPE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_NUMBERS = ("IP_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN")
_DIGIT_DOT, _DOT_DIGIT = re.compile(r"\d\."), re.compile(r"\.\d")


def is_public_ip(value: str) -> bool:
    try:
        addr = ipaddress.ip_interface(value).ip
    except ValueError:
        return False
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr not in _GLOBAL_UNICAST:
            return False
    return addr.is_global


def is_decoy(text: str, entity_type: str, start: int, end: int) -> bool:
    """True for a match that is not PII: see the module docstring."""
    value = text[start:end]
    in_dotted_number = _DIGIT_DOT.fullmatch(text, max(0, start - 2), start) or _DOT_DIGIT.match(text, end)
    if entity_type in _NUMBERS and in_dotted_number:
        return True  # a fragment of a longer dotted number: 15.4.1.3.1, 5.666666666666667
    if entity_type == "IP_ADDRESS":
        if not is_public_ip(value):
            return True
        if ":" in value:
            return False
        line_start = text.rfind("\n", 0, start) + 1
        heading = not text[line_start:start].strip() and re.match(r"\.\s", text[end : end + 2])
        return bool(heading or _VERSION_BEFORE.search(text, max(line_start, start - 24), start))
    if entity_type == "PHONE_NUMBER":
        return value.lstrip("(").isdigit() or bool(_DATE_SHAPE.fullmatch(value) or _DOTTED_QUAD.fullmatch(value))
    return False


def drop_decoys(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """The findings that are PII, in a fixed order (the anonymizer breaks ties of equal spans and scores by order)."""
    kept = [r for r in results if not is_decoy(text, r.entity_type, r.start, r.end)]
    return sorted(kept, key=lambda r: (r.start, r.end, -r.score, r.entity_type))


# --- redaction ----------------------------------------------------------------------------------------------------


class PiiRedactor:
    """Replaces PII with typed placeholders ("<EMAIL_ADDRESS>"); text outside the spans is left byte for byte.

    spacy_model: an installed spaCy pipeline (package name or path) whose NER adds PERSON and LOCATION; None for the
    pattern recognizers alone. score_threshold: Presidio's minimum score for a finding.
    """

    def __init__(self, spacy_model: str | None = None, score_threshold: float = 0.5):
        import spacy
        from presidio_anonymizer import AnonymizerEngine

        if spacy_model is None:
            nlp = spacy.blank("en")
            nlp.max_length = 2**31 - 1  # a tokenizer alone: spaCy's 1M-character guard is for parser/NER memory
        else:
            nlp = _load_spacy_model(spacy_model)
        self.spacy_model = spacy_model
        self.analyzer = _build_analyzer(nlp, score_threshold, ner=spacy_model is not None)
        self.anonymizer = AnonymizerEngine()

    def redact(self, text: str) -> str:
        return self.redact_batch([text])[0][0]

    def redact_batch(self, texts: list[str]) -> tuple[list[str], Counter]:
        """(redacted texts, placeholders written by entity type)."""
        # NER can fire on any line, and a real model's lemmas let context words reach across lines: whole documents
        findings = self._find_in_stretches(texts) if self.spacy_model is None else self._find_whole(texts)
        redacted, counts = [], Counter()
        for text, found in zip(texts, findings):
            found = drop_decoys(text, found)
            if not found:
                redacted.append(text)
                continue
            result = self.anonymizer.anonymize(text, found)
            counts.update(item.entity_type for item in result.items)
            redacted.append(result.text)
        return redacted, counts

    def _find_whole(self, texts: list[str]) -> list[list[RecognizerResult]]:
        from presidio_analyzer import BatchAnalyzerEngine

        return list(BatchAnalyzerEngine(self.analyzer).analyze_iterator(texts, language="en", batch_size=32))

    def _find_in_stretches(self, texts: list[str]) -> list[list[RecognizerResult]]:
        findings: list[list[RecognizerResult]] = [[] for _ in texts]
        pattern_entities = [e for e in DEFAULT_ENTITIES if e != "PHONE_NUMBER"]
        for entities, stretches in ((pattern_entities, pattern_lines), (["PHONE_NUMBER"], phone_stretches)):
            chunk: list[tuple[int, int, int]] = []
            size = 0
            for i, text in enumerate(texts):
                for s, e in stretches(text):
                    if chunk and size + e - s > CHUNK_CHARS:
                        self._analyze_chunk(texts, chunk, entities, findings)
                        chunk, size = [], 0
                    chunk.append((i, s, e))
                    size += e - s + 1
            if chunk:
                self._analyze_chunk(texts, chunk, entities, findings)
        return findings

    def _analyze_chunk(self, texts: list[str], chunk: list[tuple[int, int, int]], entities: list[str], findings):
        """Analyses the stretches joined by "\\n"; files each finding under its document, at document offsets."""
        offsets, pos = [], 0
        for _, s, e in chunk:
            offsets.append(pos)
            pos += e - s + 1
        joined = "\n".join(texts[i][s:e] for i, s, e in chunk)
        for r in self.analyzer.analyze(joined, language="en", entities=entities):
            k = bisect_right(offsets, r.start) - 1
            i, s, e = chunk[k]
            shift = s - offsets[k]
            if r.end + shift > e:
                raise RuntimeError(f"{r.entity_type} finding {joined[r.start:r.end]!r} runs past its stretch; "
                                   "piecewise analysis would differ from whole-document analysis")
            r.start, r.end = r.start + shift, r.end + shift
            findings[i].append(r)


# --- the independent check ----------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_CANDIDATE = re.compile(r"[+(]?\d[\d ().\-/\u00a0]{5,}\d\)?")
_IPV4 = re.compile(r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b")
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.[0-9])"
)
_CARD = re.compile(r"\b(?!1[0-9]{12}(?![0-9]))[13456][0-9]{3}[- ]?[0-9]{3,4}[- ]?[0-9]{3,4}[- ]?[0-9]{3,5}\b")
_SSN = re.compile(r"\b([0-9]{3})([- .])([0-9]{2})\2([0-9]{4})\b")
_IBAN = re.compile(  # Presidio's shape: a trailing group that breaks the checksum can be left off, as there
    r"(?<![A-Z0-9])([A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2,6})((?:[ -]?[A-Z0-9]{4})?)((?:[ -]?[A-Z0-9]{1,3})?)"
    r"(?![A-Z0-9])"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _ssn_issued(area: str, group: str, serial: str) -> bool:
    digits = area + group + serial
    return (
        len(set(digits)) > 1
        and area not in ("000", "666")
        and group != "00"
        and serial != "0000"
        and digits not in ("123456789", "987654320", "078051120")
    )


def _iban_valid(value: str) -> bool:
    compact = value.replace(" ", "").replace("-", "")
    if not 15 <= len(compact) <= 34:
        return False
    number = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(number) % 97 == 1


def _phones(text: str) -> list[tuple[int, int]]:
    """Formatted phone numbers: a digit run found by regex, confirmed by phonenumbers in one of PHONE_REGIONS."""
    found = set()
    for m in _PHONE_CANDIDATE.finditer(text):
        if m.group().lstrip("(").isdigit() or not _could_be_phone(m.group()):
            continue  # too few digits, or a bare digit run (whatever matches inside is a decoy)
        lo, hi = max(0, m.start() - 4), m.end() + 4  # the matcher looks at the characters either side
        for region in PHONE_REGIONS:
            for p in phonenumbers.PhoneNumberMatcher(text[lo:hi], region, leniency=PHONE_LENIENCY):
                start, end = lo + p.start, lo + p.end
                if start < m.end() and end > m.start():
                    found.add((start, end))
    return sorted(found)


def remaining_pii(text: str) -> list[tuple[str, str]]:
    """(entity type, matched string) for every default PII pattern that still matches, in text order.

    Written apart from the analyzer (plain regexes, then a checksum, the suffix list, phonenumbers or ipaddress) so that
    a redaction bug cannot hide itself; it shares only `is_decoy`, the definition of what is not PII.
    """
    spans = [("PHONE_NUMBER", s, e) for s, e in _phones(text)]
    if "@" in text:
        spans += [("EMAIL_ADDRESS", m.start(), m.end()) for m in _EMAIL.finditer(text) if _has_public_suffix(m.group())]
    spans += [("IP_ADDRESS", m.start(), m.end()) for m in _IPV4.finditer(text)]
    if ":" in text:
        spans += [("IP_ADDRESS", m.start(), m.end()) for m in _IPV6.finditer(text)]
    spans += [("CREDIT_CARD", m.start(), m.end()) for m in _CARD.finditer(text) if _luhn(re.sub("[^0-9]", "", m[0]))]
    spans += [("US_SSN", m.start(), m.end()) for m in _SSN.finditer(text) if _ssn_issued(m[1], m[3], m[4])]
    for m in _IBAN.finditer(text):
        end = next((m.end(g) for g in (3, 2, 1) if m.group(g) and _iban_valid(text[m.start() : m.end(g)])), None)
        if end is not None:
            spans.append(("IBAN_CODE", m.start(), end))
    spans = [(kind, s, e) for kind, s, e in spans if not is_decoy(text, kind, s, e)]
    return [(kind, text[s:e]) for kind, s, e in sorted(spans, key=lambda x: (x[1], x[2]))]
