"""FineWeb's heuristic quality filters, datatrove-style, in pure Python.

Four filters, in the order FineWeb runs them (datatrove's examples/fineweb.py):

    GopherRepetitionFilter  "gopher_rep"    Rae et al. 2021 (Gopher), appendix A, table A1
    GopherQualityFilter     "gopher_qual"   Rae et al. 2021 (Gopher), appendix A
    C4QualityFilter         "c4"            Raffel et al. 2020 (T5/C4), section 2.2; FineWeb's settings
    FineWebQualityFilter    "fineweb_qual"  Penedo et al. 2024 (FineWeb), section 3.3

Each follows datatrove's implementation and keeps its reason strings (GopherQualityFilter's without datatrove's
"gopher_" prefix), so the counts compare with datatrove's stats. `words()` gives the tokens datatrove's English
word tokenizer gives: spaCy's rule-based English tokenizer (no model, so nothing is downloaded), called once per
distinct whitespace-separated chunk and cached, so a chunk seen before costs a dictionary lookup.
`sentence_count()` is a regex where datatrove runs spaCy's sentencizer on every C4 line. Thresholds are keyword
arguments carrying the published defaults; a threshold set to None switches its rule off.
bench/bench_filter_agreement.py measures how often the chain agrees with datatrove's, and lists where not.

`C4QualityFilter` removes lines and REWRITES `doc.text` (as datatrove's does). Filters later in the same chain see
the rewritten text, and `pipeline.filters.base.apply_filters` writes it back into the kept row.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from pipeline.documents import Document
from pipeline.filters.base import FilterResult

# ---------------------------------------------------------------------------------------------------- shared helpers

# A sentence ends at . ! or ?, maybe followed by closing quotes/brackets, then whitespace; not after "e.g." or
# "i.e.", which spaCy's tokenizer keeps whole so datatrove's sentencizer does not split there either.
_SENTENCE_BREAK = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<=[.!?])[\"'”’)\]]*\s+")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


_TOKEN_CACHE: dict[str, tuple[str, ...]] = {}  # whitespace-separated chunk -> its tokens
_TOKEN_CACHE_MAX = 1 << 18


@lru_cache(maxsize=1)
def _english():
    import spacy  # here, not at import: loading the language data takes seconds

    return spacy.blank("en")


def _tokenize_chunks(chunks: list[str]) -> dict[str, tuple[str, ...]]:
    """spaCy's tokens of each chunk. One call per chunk: joined into one text, spaCy's special-case matcher
    ("(=", "''") can see across the joins and tokenize a chunk differently from the same chunk in its document."""
    nlp = _english()
    # spaCy adds every new string to its vocabulary for good; the memory zone frees them, so a long crawl does not
    # grow the process (datatrove does the same)
    with nlp.memory_zone():
        return {chunk: tuple(token.text for token in nlp.tokenizer(chunk)) for chunk in chunks}


def words(text: str) -> list[str]:
    """Word and punctuation tokens as spaCy's English tokenizer (and so datatrove) splits them: "don't" ->
    "do", "n't"; "well-known" -> "well", "-", "known"; "e.g." and "/usr" stay whole.

    spaCy splits on whitespace first and tokenizes each chunk on its own, so chunks already seen come from a cache
    and only new ones go to spaCy."""
    chunks = text.split()
    missing = [chunk for chunk in dict.fromkeys(chunks) if chunk not in _TOKEN_CACHE]
    if missing:
        if len(_TOKEN_CACHE) + len(missing) > _TOKEN_CACHE_MAX:
            _TOKEN_CACHE.clear()
        _TOKEN_CACHE.update(_tokenize_chunks(missing))
    tokens: list[str] = []
    for chunk in chunks:
        tokens.extend(_TOKEN_CACHE[chunk])
    return tokens


def is_symbol(token: str) -> bool:
    """True for a token with no letter or digit: punctuation, "...", "#"."""
    return not any(ch.isalnum() for ch in token)


def sentence_count(text: str) -> int:
    """Sentences in `text`, splitting after . ! ? but not "e.g." or "i.e." (a regex stand-in for datatrove's spaCy
    sentencizer, which C4 would run on every line: "Appendix O. Obsolete" is two sentences here, one there)."""
    return sum(1 for part in _SENTENCE_BREAK.split(text) if part.strip())


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, total characters of those repeats); the first occurrence is not counted."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


def _over(value: float, threshold: float | None) -> bool:
    """value > threshold, False when the rule is switched off (threshold None)."""
    return threshold is not None and value > threshold


def n_grams(tokens: list[str], n: int) -> list[str]:
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def top_n_gram_chars(tokens: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram: its length times its count (0 if there is none)."""
    counts = Counter(n_grams(tokens, n))
    if not counts:
        return 0
    gram, count = counts.most_common(1)[0]
    return len(gram) * count


def duplicated_n_gram_chars(tokens: list[str], n: int) -> int:
    """Characters (spaces not counted) in repeated n-grams; after a repeat the scan jumps past it, so overlapping
    repeats are not counted twice (datatrove's approximation of Gopher's "characters in duplicate n-grams")."""
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    while i <= len(tokens) - n:
        gram = tuple(tokens[i : i + n])
        if gram in seen:
            chars += sum(len(t) for t in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


# ---------------------------------------------------------------------------------------------------- Gopher


@dataclass
class GopherRepetitionFilter:
    """Drops documents with too much repeated content (Gopher, Rae et al. 2021, appendix A, table A1).

    Paragraphs are split on blank lines, lines on newlines. Fractions of characters are of the whole text.
    Checks run in order: paragraphs, lines, top n-grams, duplicated n-grams; the first that fails names the reason.
    As in Gopher and datatrove, the "top" n-gram may occur only once, so a text of a few words (where one 2-gram
    is over 20% of the characters) is dropped here as "top_2_gram" before GopherQualityFilter sees it.
    """

    name: ClassVar[str] = "gopher_rep"

    # Gopher table A1 thresholds (datatrove's defaults).
    dup_line_frac: float | None = 0.3  # share of lines that repeat an earlier line
    dup_para_frac: float | None = 0.3  # share of paragraphs that repeat an earlier paragraph
    dup_line_char_frac: float | None = 0.2  # share of characters in repeated lines
    dup_para_char_frac: float | None = 0.2  # share of characters in repeated paragraphs
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))

    def filter(self, doc: Document) -> FilterResult:
        text = doc.text
        if not text.strip():
            return True  # nothing repeats; GopherQualityFilter drops it as too short
        n_chars = len(text)

        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        dups, dup_chars = find_duplicates(paragraphs)
        if _over(dups / len(paragraphs), self.dup_para_frac):
            return False, "dup_para_frac"
        if _over(dup_chars / n_chars, self.dup_para_char_frac):
            return False, "dup_para_char_frac"

        lines = _LINE_BREAK.split(text)
        dups, dup_chars = find_duplicates(lines)
        if _over(dups / len(lines), self.dup_line_frac):
            return False, "dup_line_frac"
        if _over(dup_chars / n_chars, self.dup_line_char_frac):
            return False, "dup_line_char_frac"

        tokens = words(text)
        for n, frac in self.top_n_grams:
            if top_n_gram_chars(tokens, n) / n_chars > frac:
                return False, f"top_{n}_gram"
        for n, frac in self.dup_n_grams:
            if duplicated_n_gram_chars(tokens, n) / n_chars > frac:
                return False, f"duplicated_{n}_n_grams"
        return True


# Gopher's stop words (Rae et al. 2021, appendix A): a document must contain at least two of them.
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclass
class GopherQualityFilter:
    """Gopher's document-quality rules (Rae et al. 2021, appendix A), as datatrove implements them.

    Word counts, the average word length and the alphabetic ratio use word tokens (punctuation-only tokens left
    out); the symbol ratios divide by all tokens, as datatrove does. datatrove also divides the alphabetic ratio
    by all tokens, punctuation included (`alpha_ratio_counts_punctuation=True`); the paper counts words, and on
    3,259 English pages of Debian and Python documentation the token version dropped 1,300 of the 2,958 that reach
    this filter, ordinary Debian handbook prose among them, so the default follows the paper.
    A token is a symbol if it has no letter or digit; datatrove's table of punctuation leaves out "•", "‘", "©"
    and box-drawing characters, so it counts those as words.
    Stop words match case-sensitively, as datatrove does ("The" does not count as "the"), and count once each:
    "the ... the" is one stop word, not two.
    Reasons are datatrove's without its "gopher_" prefix (the filter name already says gopher_qual); note that
    "enough_stop_words" is datatrove's name for "too few stop words".
    """

    name: ClassVar[str] = "gopher_qual"

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # "#" per word, and "..."/"…" per word, each at most this
    max_bullet_lines_ratio: float | None = 0.9  # share of lines starting with a bullet
    max_ellipsis_lines_ratio: float | None = 0.3  # share of lines ending with an ellipsis
    max_non_alpha_words_ratio: float | None = 0.8  # despite the name: at least this share of words has a letter
    # False: the share above is of words (the paper's rule). True: of all tokens, punctuation included, as datatrove
    # and so FineWeb compute it; on Debian and Python documentation that drops 4 pages in 10 (bench_filter_agreement).
    alpha_ratio_counts_punctuation: bool = False
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS

    def filter(self, doc: Document) -> FilterResult:
        text = doc.text
        tokens = words(text)
        word_tokens = [t for t in tokens if not is_symbol(t)]
        n_words = len(word_tokens)

        if self.min_doc_words is not None and n_words < self.min_doc_words:
            return False, "short_doc"
        if self.max_doc_words is not None and n_words > self.max_doc_words:
            return False, "long_doc"
        if not n_words:
            return False, "short_doc"  # only reachable with min_doc_words=None; the ratios below need words

        avg_length = sum(len(w) for w in word_tokens) / n_words
        if self.min_avg_word_length is not None and avg_length < self.min_avg_word_length:
            return False, "below_avg_threshold"
        if self.max_avg_word_length is not None and avg_length > self.max_avg_word_length:
            return False, "above_avg_threshold"

        n_tokens = len(tokens)
        if _over(text.count("#") / n_tokens, self.max_symbol_word_ratio):
            return False, "too_many_hashes"
        if _over((text.count("...") + text.count("…")) / n_tokens, self.max_symbol_word_ratio):
            return False, "too_many_ellipsis"

        lines = text.splitlines() or [""]
        # datatrove counts lines starting with "•" or "-" as bullet lines.
        bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
        if _over(bullets / len(lines), self.max_bullet_lines_ratio):
            return False, "too_many_bullets"
        end_ellipsis = sum(line.rstrip().endswith(("...", "…")) for line in lines)
        if _over(end_ellipsis / len(lines), self.max_ellipsis_lines_ratio):
            return False, "too_many_end_ellipsis"

        alpha = sum(any(ch.isalpha() for ch in t) for t in word_tokens)
        of = n_tokens if self.alpha_ratio_counts_punctuation else n_words
        if self.max_non_alpha_words_ratio is not None and alpha / of < self.max_non_alpha_words_ratio:
            return False, "below_alpha_threshold"

        # distinct stop words, as Gopher ("at least two of the following English words") and datatrove count them
        if self.min_stop_words is not None and len(set(self.stop_words) & set(tokens)) < self.min_stop_words:
            return False, "enough_stop_words"
        return True


# ---------------------------------------------------------------------------------------------------- C4

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")  # Wikipedia-style "[1]", "[edit]"
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
C4_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@dataclass
class C4QualityFilter:
    """C4's clean-up rules (Raffel et al. 2020, section 2.2, and tfds c4_utils), with FineWeb's settings.

    Line by line (lines are stripped; a line failing one rule is removed):
      - a line with a word longer than `max_word_length` characters is removed;
      - Wikipedia citation marks ("[1]", "[edit]", "[citation needed]") are cut out (`remove_citations`);
      - a line not ending in terminal punctuation is removed (`filter_no_terminal_punct`; off in FineWeb);
      - a line with fewer than `min_words_per_line` whitespace-separated words is removed (so are blank lines);
      - a line containing "lorem ipsum" DROPS THE DOCUMENT ("lorem_ipsum");
      - a line containing "javascript" is removed;
      - a line containing "{" DROPS THE DOCUMENT ("curly_bracket");
      - a line containing a cookie/terms-of-use phrase is removed.
    The document-level rules look only at lines that survive the rules before them, as in datatrove and tfds.
    Then the document is dropped with "too_few_sentences" if the kept lines hold fewer than `min_num_sentences`
    sentences; otherwise `doc.text` is REWRITTEN to the kept lines joined by "\\n" (blank lines disappear).
    """

    name: ClassVar[str] = "c4"

    remove_citations: bool = True
    # C4 kept only lines ending in terminal punctuation; FineWeb ran C4QualityFilter(filter_no_terminal_punct=False)
    # because that rule removed too much. This default is FineWeb's.
    filter_no_terminal_punct: bool = False
    min_num_sentences: int | None = 5
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    # C4's "{" rule drops every page with code in it, programming documentation included. FineWeb kept it (the
    # default here is C4's and FineWeb's); pass False to keep code pages.
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def filter(self, doc: Document) -> FilterResult:
        kept: list[str] = []
        n_sentences = 0
        for line in doc.text.splitlines():
            line = line.strip()
            line_words = line.split()
            if self.max_word_length is not None and any(len(w) > self.max_word_length for w in line_words):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(C4_END_PUNCTUATION) or line.endswith("...")):
                continue
            if self.min_words_per_line is not None and len(line_words) < self.min_words_per_line:
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return False, "lorem_ipsum"
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return False, "curly_bracket"
            if self.filter_policy and any(p in lower for p in C4_POLICY_PHRASES):
                continue
            n_sentences += sentence_count(line)
            kept.append(line)
        if self.min_num_sentences is not None and n_sentences < self.min_num_sentences:
            return False, "too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return True


# ---------------------------------------------------------------------------------------------------- FineWeb

FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")


@dataclass
class FineWebQualityFilter:
    """FineWeb's own filters (Penedo et al. 2024, section 3.3), as in datatrove's FineWebQualityFilter.

    Lines are the text split on "\\n", not stripped, blank ones included (after C4QualityFilter there are none).
    Thresholds compare strictly, as datatrove does (the paper writes <= 0.12 and >= 0.67 / 0.01; FineWeb was made with
    datatrove's code).
    """

    name: ClassVar[str] = "fineweb_qual"

    line_punct_thr: float = 0.12  # drop if the share of lines ending in . ' " ! ? is < this
    line_punct_exclude_zero: bool = False  # True: a document with no such line at all is not dropped by that rule
    short_line_thr: float = 0.67  # drop if the share of lines of <= short_line_length characters is > this
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01  # drop if the share of characters in repeated lines is > this
    new_line_ratio: float = 0.3  # drop if newlines per word is > this (list-like pages)

    def filter(self, doc: Document) -> FilterResult:
        text = doc.text
        lines = text.split("\n")

        ratio = sum(line.endswith(FINEWEB_STOP_CHARS) for line in lines) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return False, "line_punct_ratio"

        ratio = sum(len(line) <= self.short_line_length for line in lines) / len(lines)
        if ratio > self.short_line_thr:
            return False, "short_line_ratio"

        non_empty = [line for line in lines if line.strip()]
        ratio = find_duplicates(non_empty)[1] / max(1, len(text.replace("\n", "")))
        if ratio > self.char_duplicates_ratio:
            return False, "char_dup_ratio"

        if text.count("\n") / max(1, len(words(text))) > self.new_line_ratio:
            return False, "list_ratio"
        return True


# ---------------------------------------------------------------------------------------------------- the chain


def default_quality_filters(alpha_ratio_counts_punctuation: bool = False) -> list:
    """FineWeb's quality filters in FineWeb's order, with the defaults above; `alpha_ratio_counts_punctuation=True`
    gives datatrove's (and so FineWeb's) exact decisions (see GopherQualityFilter)."""
    gopher = GopherQualityFilter(alpha_ratio_counts_punctuation=alpha_ratio_counts_punctuation)
    return [GopherRepetitionFilter(), gopher, C4QualityFilter(), FineWebQualityFilter()]


__all__ = [
    "C4QualityFilter",
    "FineWebQualityFilter",
    "GopherQualityFilter",
    "GopherRepetitionFilter",
    "default_quality_filters",
    "duplicated_n_gram_chars",
    "find_duplicates",
    "sentence_count",
    "top_n_gram_chars",
    "words",
]
