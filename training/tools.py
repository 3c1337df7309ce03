"""The chat model's tools as it sees them: a function from the text it wrote between the tool's tokens to the text
pasted back. One definition, used to write the SFT conversations, to evaluate, and to chat; the generators' own
python calls (trusted templates) go through generator_python_tool, which prints what the sandbox prints."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.search import SearchIndex, format_results
from pipeline.storage import PartitionMissing, Store
from training.sandbox import ensure_available, run_python

SEARCH_K, SEARCH_CHARS = 2, 300  # one search pastes at most this much: short enough for a small model's context


def python_tool(code: str) -> str:
    """Model-written code: inside bubblewrap unless CRAWL2CHAT_SANDBOX=python (training/sandbox.py)."""
    return run_python(code).output


def generator_python_tool(code: str) -> str:
    """Code sft_data's generators write: one expression over literals (a product, a sum, a str.count), their
    templates filled with numbers and words, never a model's text. Evaluated here, without builtins, and printed as
    the sandbox prints a final expression (its repr): the sandbox's child process costs ~60 ms a call, minutes over
    the thousands of conversations a recipe writes. tests/training/test_sft_data.py checks every template against the
    sandbox itself."""
    return repr(eval(compile(code, "<generator>", "eval"), {"__builtins__": {}}))


def search_tool(index: SearchIndex) -> Callable[[str], str]:
    return lambda query: format_results(index.search(query, k=SEARCH_K), max_chars=SEARCH_CHARS)


def available_tools(store: Store, index: SearchIndex | None = None) -> dict[str, Callable[[str], str]]:
    """python always; search over `index`, else over the store's committed search_index when it has one.
    SandboxUnavailable when the python tool's sandbox cannot run here (training/sandbox.py)."""
    ensure_available()
    tools: dict[str, Callable[[str], str]] = {"python": python_tool}
    try:
        tools["search"] = search_tool(index or SearchIndex.load(store))
    except PartitionMissing:
        pass
    return tools
