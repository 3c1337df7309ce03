"""The chat model's tools as it sees them: a function from the text it wrote between the tool's tokens to the text
pasted back. One definition, used to write the SFT conversations, to evaluate, and to chat."""

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
    """Code sft_data's generators write (their templates filled with numbers and words, never a model's text): the
    in-Python layers alone, without bubblewrap's ~40 ms a call over thousands of conversations."""
    return run_python(code, isolated_by="python").output


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
