"""Every rule of the four quality filters on small texts: one text per drop reason, and good prose that passes."""

from __future__ import annotations

import pytest

from pipeline.documents import Document
from pipeline.filters.base import first_drop_reason
from pipeline.filters.quality import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    default_quality_filters,
    duplicated_n_gram_chars,
    find_duplicates,
    sentence_count,
    top_n_gram_chars,
    words,
)

GOOD_PROSE = """\
The old lighthouse stands at the edge of the harbour, where the river meets the sea. For more than a century, \
its keepers climbed the narrow stairs every evening to light the lamp. Fishermen still say that the beam could be \
seen from twenty miles away on a clear night.

In the spring of 1921, a storm damaged the lantern room and broke most of the glass. The town raised money to \
repair it, and volunteers carried new panes up the hill by hand. When the light returned, people gathered on the \
pier to watch it turn.

Today the building is a small museum. Visitors can read the logbooks, which record the weather, passing ships and \
the occasional rescue. A guide explains how the lens works, and children are allowed to ring the fog bell once \
before they leave."""


def doc(text: str) -> Document:
    return Document(text=text, id="doc-1")


def unique_words(count: int, start: int = 0) -> list[str]:
    """Filler words that never repeat, so no n-gram containing one repeats."""
    return [f"filler{i:04d}" for i in range(start, start + count)]


def sentences(count: int) -> list[str]:
    """Distinct, well-formed English sentences."""
    return [f"Sentence number {i} describes the weather in town {i} with enough words to count." for i in range(count)]


# ------------------------------------------------------------------------------------------------- good prose


def test_good_prose_passes_every_filter():
    for f in default_quality_filters():
        assert f.filter(doc(GOOD_PROSE)) is True, f.name


def test_good_prose_passes_the_chain_and_c4_only_removes_blank_lines():
    d = doc(GOOD_PROSE)
    assert first_drop_reason(d, default_quality_filters()) is None
    assert d.text == "\n".join(line for line in GOOD_PROSE.splitlines() if line.strip())


def test_default_quality_filters_order_and_names():
    filters = default_quality_filters()
    assert [f.name for f in filters] == ["gopher_rep", "gopher_qual", "c4", "fineweb_qual"]
    assert [type(f) for f in filters] == [
        GopherRepetitionFilter,
        GopherQualityFilter,
        C4QualityFilter,
        FineWebQualityFilter,
    ]


def test_chain_prefixes_the_reason_with_the_filter_name():
    two_sentences = " ".join(GOOD_PROSE.split(". ")[:2]) + "."  # about 30 words, none repeated much
    assert first_drop_reason(doc(two_sentences), default_quality_filters()) == "gopher_qual:short_doc"


def test_chain_drops_a_tiny_text_as_top_2_gram_as_datatrove_does():
    # Gopher's top n-gram rule counts an n-gram seen once: in a 22-character text one 2-gram is over 20%.
    assert first_drop_reason(doc("Far too short to keep."), default_quality_filters()) == "gopher_rep:top_2_gram"


# ------------------------------------------------------------------------------------------------- helpers


def test_words_splits_as_spacy_and_datatrove_do():
    assert words("Don't stop... It's 3.14, well-known #tags! See e.g. /usr/share or x=1.") == [
        "Do", "n't", "stop", "...", "It", "'s", "3.14", ",", "well", "-", "known", "#", "tags", "!",
        "See", "e.g.", "/usr", "/", "share", "or", "x=1", ".",
    ]  # fmt: skip


def test_words_chunk_cache_gives_the_tokens_of_the_whole_text():
    import spacy

    text = GOOD_PROSE + "\n\n>>> print(f'{x!r}')  # it's a \"well-known\" idiom, isn't it?\nSee https://example.org/a-b."
    whole = [t.text for t in spacy.blank("en")(text) if not t.is_space]
    assert words(text) == whole
    assert words(text) == whole  # the second time every chunk comes from the cache


def test_sentence_count():
    assert sentence_count("One. Two! Three? Four") == 4
    assert sentence_count('He said "stop." Then he left.') == 2
    assert sentence_count("") == 0
    # spaCy keeps "e.g." and "i.e." whole, so datatrove's sentencizer does not end a sentence there
    assert sentence_count("Some modules work on one machine, e.g. signal and mmap. Others, i.e. socket, do not.") == 2


def test_find_duplicates_counts_repeats_not_first_occurrences():
    assert find_duplicates(["ab", "cde", "ab", "ab", "cde"]) == (3, 7)


def test_n_gram_character_counts():
    tokens = "a b c a b c a b".split()
    assert top_n_gram_chars(tokens, 2) == len("a b") * 3
    # 3-grams: "a b c" seen, "b c a", "c a b", then "a b c" repeats (+3 chars, skip 3), then "a b" is too short.
    assert duplicated_n_gram_chars(tokens, 3) == 3
    assert top_n_gram_chars(["one"], 2) == 0


# ------------------------------------------------------------------------------------------------- Gopher repetition


def gopher_rep(text: str, **kwargs):
    return GopherRepetitionFilter(**kwargs).filter(doc(text))


def test_gopher_rep_dup_para_frac():
    a, b = sentences(2)
    assert gopher_rep(f"{a}\n\n{b}\n\n{a}\n\n{a}") == (False, "dup_para_frac")


def test_gopher_rep_dup_para_char_frac():
    long_para = " ".join(sentences(4))
    text = f"{long_para}\n\nShort one.\n\nShort two.\n\n{long_para}"  # 1 of 4 paragraphs, half the characters
    assert gopher_rep(text) == (False, "dup_para_char_frac")


def test_gopher_rep_dup_line_frac():
    text = "\n".join(["Alpha line.", "Beta line.", "Alpha line.", "Beta line.", "Gamma line."])  # 2 of 5 repeat
    assert gopher_rep(text) == (False, "dup_line_frac")


def test_gopher_rep_dup_line_char_frac():
    long_line = " ".join(sentences(3))
    text = "\n".join([long_line, "Short one.", "Short two.", "Short three.", long_line])  # 1 of 5, half the chars
    assert gopher_rep(text) == (False, "dup_line_char_frac")


def test_gopher_rep_top_2_gram():
    assert gopher_rep("buy now " * 30) == (False, "top_2_gram")


def test_gopher_rep_top_3_gram():
    # "alpha beta gamma" (16 chars) once per 62 chars: 3-gram share 0.26 > 0.18, its 2-grams 0.16 <= 0.2.
    units = [" ".join(["alpha beta gamma", *unique_words(5, 5 * i)]) for i in range(20)]
    assert gopher_rep(" ".join(units)) == (False, "top_3_gram")


def test_gopher_rep_top_4_gram():
    # "alpha beta gamma delta" (22 chars) once per 104 chars: 0.21 > 0.16; its 3-grams 0.15 <= 0.18.
    units = [" ".join(["alpha beta gamma delta", *unique_words(8, 8 * i)]) for i in range(20)]
    assert gopher_rep(" ".join(units)) == (False, "top_4_gram")


def test_gopher_rep_duplicated_5_n_grams():
    # A 10-word phrase said three times in 600 characters: both repeats count in full for 5-grams (0.20 > 0.15)
    # while no 2-, 3- or 4-gram is frequent enough for the top n-gram rules (4-grams: 0.14 <= 0.16).
    phrase = "rivers carry sediment toward coastal plains where farmers plant rice"
    text = " ".join([*unique_words(12), phrase, *unique_words(12, 12), phrase, *unique_words(12, 24), phrase])
    assert gopher_rep(text) == (False, "duplicated_5_n_grams")


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10])
def test_gopher_rep_duplicated_n_grams_each_n(n):
    threshold = dict(GopherRepetitionFilter().dup_n_grams)[n]
    phrase = " ".join(f"word{i}" for i in range(n))  # repeated once: (n*5 chars) in a text sized around it
    f = GopherRepetitionFilter(top_n_grams=(), dup_n_grams=((n, threshold),))
    text = " ".join([phrase, *unique_words(6), phrase])
    assert duplicated_n_gram_chars(words(text), n) / len(text) > threshold
    assert f.filter(doc(text)) == (False, f"duplicated_{n}_n_grams")


def test_gopher_rep_thresholds_can_be_switched_off():
    a, b = sentences(2)
    assert gopher_rep(f"{a}\n\n{b}\n\n{a}\n\n{a}", dup_para_frac=None) == (False, "dup_para_char_frac")


def test_gopher_rep_keeps_empty_text():
    assert gopher_rep("") is True


# ------------------------------------------------------------------------------------------------- Gopher quality


def gopher_qual(text: str, **kwargs):
    return GopherQualityFilter(**kwargs).filter(doc(text))


def test_gopher_qual_short_doc():
    assert gopher_qual("The cat sat on the mat and that was the end of it.") == (False, "short_doc")


def test_gopher_qual_long_doc():
    assert gopher_qual("the word " * 50_001) == (False, "long_doc")


def test_gopher_qual_below_avg_threshold():
    assert gopher_qual("I am to be at it so we go up and do it. " * 6) == (False, "below_avg_threshold")


def test_gopher_qual_above_avg_threshold():
    text = "The internationalization of telecommunications infrastructure characteristically necessitates " * 8
    assert gopher_qual(text) == (False, "above_avg_threshold")


def test_gopher_qual_too_many_hashes():
    text = GOOD_PROSE + " #travel #lighthouse #history #museum #harbour #storm #sea #town #summer #weekend" * 3
    assert gopher_qual(text) == (False, "too_many_hashes")


def test_gopher_qual_too_many_ellipsis():
    text = "The lamp was lit... and then the keepers waited with the boats... " * 8
    assert gopher_qual(text) == (False, "too_many_ellipsis")


def test_gopher_qual_too_many_bullets():
    text = "\n".join(f"• Item {i} covers the history of the harbour and the old lighthouse." for i in range(10))
    assert gopher_qual(text) == (False, "too_many_bullets")


def test_gopher_qual_too_many_end_ellipsis():
    lines = [f"Line {i} tells the story of the harbour and the keepers who lived there." for i in range(6)]
    lines += [f"Line {i} trails off before the story of the harbour is finished and..." for i in range(6, 10)]
    assert gopher_qual("\n".join(lines)) == (False, "too_many_end_ellipsis")


def test_gopher_qual_below_alpha_threshold():
    text = GOOD_PROSE + " " + " ".join(str(1000 + i) for i in range(60))
    assert gopher_qual(text) == (False, "below_alpha_threshold")


def test_gopher_qual_alpha_ratio_of_words_or_of_all_tokens_as_datatrove():
    # 14 words and 7 punctuation tokens a sentence: every word has a letter (1.0), but only 14/21 tokens do
    text = "The parser reads the file (path), then calls close(); and returns to the caller. " * 6
    assert gopher_qual(text) is True
    assert gopher_qual(text, alpha_ratio_counts_punctuation=True) == (False, "below_alpha_threshold")


def test_gopher_qual_enough_stop_words():
    text = "Bright lanterns guide small fishing boats home across dark water every night. " * 6
    assert gopher_qual(text) == (False, "enough_stop_words")


def test_gopher_qual_stop_words_match_case_sensitively_as_datatrove():
    text = "The bright lanterns guide small fishing boats home across dark water every night. " * 6
    assert gopher_qual(text) == (False, "enough_stop_words")
    assert gopher_qual(text.replace("across", "to the")) is True


def test_gopher_qual_counts_distinct_stop_words_as_gopher_and_datatrove():
    # "the" many times is one stop word; Gopher asks for two different ones.
    text = "Bright lanterns guide the small fishing boats home across the dark water every night. " * 6
    assert gopher_qual(text) == (False, "enough_stop_words")
    assert gopher_qual(text.replace("home across", "home to")) is True


# ------------------------------------------------------------------------------------------------- C4


def c4(text: str, **kwargs):
    d = doc(text)
    return C4QualityFilter(**kwargs).filter(d), d.text


def test_c4_lorem_ipsum():
    text = GOOD_PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
    assert c4(text)[0] == (False, "lorem_ipsum")


def test_c4_curly_bracket():
    text = GOOD_PROSE + "\nThe function body is written as { return x; } in the example."
    assert c4(text)[0] == (False, "curly_bracket")


def test_c4_curly_bracket_rule_can_be_switched_off_for_code_pages():
    text = GOOD_PROSE + "\nThe function body is written as { return x; } in the example."
    result, new_text = c4(text, filter_curly_bracket=False)
    assert result is True
    assert "{ return x; }" in new_text


def test_c4_too_few_sentences():
    assert c4("The harbour is quiet today. The boats are all at sea.")[0] == (False, "too_few_sentences")


def test_c4_removes_lines_and_rewrites_the_text():
    text = "\n".join(
        [
            "Menu",  # fewer than 3 words
            "The harbour is quiet today.[1] The boats are all at sea.",
            "Please enable JavaScript to view the comments.",
            "This website uses cookies to improve your experience.",
            "Read our privacy policy before you sign up.",
            "The keepers lit the lamp at dusk. Ships saw it from far away.",
            "x" * 1001 + " is a very long word in this line.",
            "",
            "Visitors can climb the stairs. The view is worth it.",
        ]
    )
    result, new_text = c4(text)
    assert result is True
    assert new_text == (
        "The harbour is quiet today. The boats are all at sea.\n"
        "The keepers lit the lamp at dusk. Ships saw it from far away.\n"
        "Visitors can climb the stairs. The view is worth it."
    )


def test_c4_counts_sentences_after_removing_lines():
    text = "\n".join(
        [
            "The harbour is quiet today. The boats are all at sea.",
            "Please enable JavaScript. It is needed. For this page. To work.",
        ]
    )
    assert c4(text)[0] == (False, "too_few_sentences")
    assert c4(text, filter_javascript=False)[0] is True


def test_c4_terminal_punctuation_rule_is_off_by_default_as_in_fineweb():
    text = "\n".join([*sentences(5), "A heading without a full stop"])
    result, new_text = c4(text)
    assert result is True and new_text.endswith("A heading without a full stop")
    result, new_text = c4(text, filter_no_terminal_punct=True)
    assert result is True and "A heading" not in new_text


def test_c4_keeps_text_unchanged_when_nothing_is_dropped_but_strips_lines():
    text = "\n".join(sentences(5))
    assert c4("  " + text + "  \n") == (True, text)


# ------------------------------------------------------------------------------------------------- FineWeb


def fineweb(text: str, **kwargs):
    return FineWebQualityFilter(**kwargs).filter(doc(text))


def test_fineweb_line_punct_ratio():
    text = "\n".join(f"Navigation entry number {i} for the harbour museum website" for i in range(10))
    assert fineweb(text) == (False, "line_punct_ratio")


def test_fineweb_line_punct_exclude_zero_spares_documents_without_any_punctuated_line():
    text = "\n".join(f"Navigation entry number {i} for the harbour museum website" for i in range(10))
    assert fineweb(text, line_punct_exclude_zero=True) is True


def test_fineweb_thresholds_compare_strictly_as_datatrove_does():
    # 3 of 25 lines end in a full stop: exactly 0.12, which datatrove (and so FineWeb) keeps; 2 of 25 is below
    lines = [f"Line number {i} of this document talks about topic {i} at length" for i in range(25)]
    at = [line + ("." if i < 3 else "") for i, line in enumerate(lines)]
    below = [line + ("." if i < 2 else "") for i, line in enumerate(lines)]
    assert fineweb("\n".join(at)) is True
    assert fineweb("\n".join(below)) == (False, "line_punct_ratio")


def test_fineweb_short_line_ratio():
    text = "\n".join([f"Short line {i} here." for i in range(7)] + sentences(3))
    assert fineweb(text) == (False, "short_line_ratio")


def test_fineweb_char_dup_ratio():
    a, b, c = sentences(3)
    assert fineweb("\n".join([a, b, c, a])) == (False, "char_dup_ratio")


def test_fineweb_list_ratio():
    # Twelve lines of two long words and a full stop, each over 30 characters: 11 newlines / 36 tokens > 0.3.
    pairs = [
        "Internationalization considerations.",
        "Telecommunications infrastructure.",
        "Characteristically unpredictable.",
        "Incomprehensible documentation.",
        "Representatives internationally.",
        "Unconventional interpretations.",
        "Thermodynamical considerations.",
        "Counterintuitive recommendations.",
        "Uncharacteristically thoughtful.",
        "Environmentally irresponsibility.",
        "Electroencephalographic recordings.",
        "Institutionalised bureaucracies.",
    ]
    assert all(len(line) > 30 and len(line.split()) == 2 for line in pairs)
    assert fineweb("\n".join(pairs)) == (False, "list_ratio")
    assert fineweb("\n".join(pairs), new_line_ratio=0.31) is True


def test_apply_filters_keeps_the_text_a_filter_rewrote_and_counts_drops():
    import polars as pl

    from pipeline.filters.base import apply_filters

    good = "\n".join(
        f"Line {i} of this page says something useful about the Debian package manager and its many tools."
        for i in range(8)
    )
    df = pl.DataFrame(
        {"text": [good + "\nPlease enable javascript to view the comments.", "lorem ipsum dolor sit amet"], "id": ["a", "b"], "url": ["u1", "u2"]}
    )
    kept, dropped = apply_filters(df, [C4QualityFilter()], "quality_filtered")
    assert kept["id"].to_list() == ["a"]
    assert "javascript" not in kept["text"][0] and kept["text"][0].startswith("Line 0")
    assert dropped.select("id", "stage").rows() == [("b", "quality_filtered")]
    assert dropped["reason"][0].startswith("c4:")
