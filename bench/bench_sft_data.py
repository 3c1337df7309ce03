"""Writing the SFT conversations: the generators' python calls evaluated in-process (generator_python_tool) against
each call run in the sandbox's child process, as they were before; same seed, same conversations (asserted first).

    .venv/bin/python -m bench.bench_sft_data [--items 400]
"""

from __future__ import annotations

import argparse

from bench.common import compare, save
from training import sft_data
from training.sandbox import run_python
from training.tools import generator_python_tool


def sandboxed(code: str) -> str:
    return run_python(code, isolated_by="python").output  # the in-Python layers, bubblewrap's ~40 ms a call aside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400, help="conversations of each tool-using source")
    args = parser.parse_args()
    counts = {"arithmetic": args.items, "letter_counting": args.items, "multi_turn": args.items}
    assert sft_data.mixture(0, counts, generator_python_tool) == sft_data.mixture(0, counts, sandboxed)

    def write(tool):
        return lambda: len(sft_data.mixture(0, counts, tool))

    row = compare(f"SFT conversations, {sum(counts.values())} (products, letter counts, two-turn chats)",
                  write(generator_python_tool), write(sandboxed), "each call in the sandbox's child",
                  "conversations/s")
    save("sft_data", [row])


if __name__ == "__main__":
    main()
