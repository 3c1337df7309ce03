"""The chat format: conversations to token ids and back, and tool calls made during generation.

A conversation is the common `messages` form: [{"role": "system" | "user" | "assistant", "content": ...}], where an
assistant's content may also be a list of parts, {"type": "text" | "python" | "python_output" | "search" |
"search_output", "text": ...}, so that its tool calls and their results are kept apart from what it says. Rendered
as the seeds describe it:

    <|endoftext|><|im_start|>user<|im_sep|>How many r in strawberry?<|im_end|>
    <|im_start|>assistant<|im_sep|><|python_start|>"strawberry".count("r")<|python_end|>
    <|output_start|>3<|output_end|>There are 3.<|im_end|>

The loss mask is 1 exactly on what the assistant writes: its text, its tool calls (start and end tokens included)
and its closing <|im_end|>. Everything else (the other roles, the turn headers, and tool outputs, which the tool and
not the model produces) is context only. Text goes through `encode`, so a literal "<|im_end|>" typed by a user is
ordinary characters and cannot end a turn.

<|output_start|> and <|output_end|> come only from a tool: in rendering, only around a `*_output` part; in
generation, only as the tokens ToolCalls feeds right after a tool call's end token. A model that samples either
marker itself is forging a tool's result: ToolCalls ends its turn there and records it (`forged`), `parse_reply`
drops the marker, and evaluation and RL score the reply 0 (training/evals.py's reply_rewards).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from pipeline.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
TOOLS = ("python", "search")
PART_TYPES = ("text", *TOOLS, *(f"{t}_output" for t in TOOLS))
TOOL_ENDS = tuple(f"{t}_end" for t in TOOLS)


def validate(messages: Sequence[Mapping]) -> None:
    """ValueError naming the message (and part) at fault: roles, their order, and the parts' types."""
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"message {i}: role {role!r} is not one of {ROLES}")
        if role == "system" and i != 0:
            raise ValueError(f"message {i}: a system message may only come first")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if role != "assistant" or not isinstance(content, list):
            raise ValueError(f"message {i} ({role}): content must be a string"
                             + (" or a list of parts" if role == "assistant" else ""))
        for j, part in enumerate(content):
            if part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
                raise ValueError(f"message {i} part {j}: expected {{'type': one of {PART_TYPES}, 'text': str}}, "
                                 f"got {part!r}")
    turns = [m["role"] for m in messages if m["role"] != "system"]
    for i, role in enumerate(turns):
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise ValueError(f"turn {i} is {role!r}: turns alternate user, assistant, user, ... starting with user")


def parts(content: str | list[dict]) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def render(tokenizer: Tokenizer, messages: Sequence[Mapping]) -> tuple[list[int], list[int]]:
    """(ids, mask) of a whole conversation, for training; mask[i] = 1 where ids[i] is the assistant's to predict."""
    validate(messages)
    special = tokenizer.encode_special
    ids, mask = [tokenizer.eot_id], [0]

    def add(tokens: list[int], trained: bool) -> None:
        ids.extend(tokens)
        mask.extend([int(trained)] * len(tokens))

    for message in messages:
        role = message["role"]
        add([special("<|im_start|>"), *tokenizer.encode(role), special("<|im_sep|>")], False)
        assistant = role == "assistant"
        for part in parts(message["content"]):
            kind, text = part["type"], part["text"]
            if kind == "text":
                add(tokenizer.encode(text), assistant)
            elif kind in TOOLS:
                add([special(f"<|{kind}_start|>"), *tokenizer.encode(text), special(f"<|{kind}_end|>")], assistant)
            else:  # a tool's output: pasted in by the engine, never predicted
                add([special("<|output_start|>"), *tokenizer.encode(text), special("<|output_end|>")], False)
        add([special("<|im_end|>")], assistant)
    return ids, mask


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Mapping]) -> list[int]:
    """The ids to generate the assistant's next turn from: the conversation (ending with a user turn) plus the
    assistant's turn header."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a prompt for the assistant must end with a user message")
    ids, _ = render(tokenizer, [*messages, {"role": "assistant", "content": ""}])
    return ids[:-1]  # without the empty turn's <|im_end|>


def parse_reply(tokenizer: Tokenizer, ids: Sequence[int]) -> list[dict]:
    """An assistant turn's generated ids (up to its <|im_end|>, which may be missing) as a list of parts. A tool's
    output starts right after the tool call's end token, where ToolCalls puts it; an output marker anywhere else
    was the model's own, and the turn ends before it."""
    special = {tokenizer.encode_special(f"<|{n}|>"): n for n in
               ("im_end", "output_start", "output_end", *(f"{t}_{e}" for t in TOOLS for e in ("start", "end")))}
    result: list[dict] = []
    kind, run = "text", []

    def flush() -> None:
        if run or kind != "text":
            result.append({"type": kind, "text": tokenizer.decode(run)})

    previous = None  # the special token just before, if the token before was one
    for token in ids:
        name = special.get(token)
        if name is None:
            run.append(token)
            previous = None
            continue
        forged = (name == "output_start" and previous not in TOOL_ENDS) or (
            name == "output_end" and not kind.endswith("_output"))
        if name == "im_end" or forged:
            break
        flush()
        run = []
        if name == "output_start":
            kind = f"{previous.removesuffix('_end')}_output"
        elif name.endswith("_start"):
            kind = name.removesuffix("_start")
        else:
            kind = "text"
        previous = name
    flush()
    return [p for p in result if p["type"] != "text" or p["text"]]


ToolFn = Callable[[str], str]


class ToolCalls:
    """The engine's hook for tool use: when a row has just written <|python_end|> or <|search_end|>, decode what
    it wrote since the matching start token, run the tool, and return the tokens to force next:
    <|output_start|> result <|output_end|>. Generation then goes on after the result, as the seeds describe.

    The hook sees sampled tokens only, so a row that shows it <|output_start|> or <|output_end|> wrote a tool's
    marker itself: it returns None, which ends the row there (training/engine.py), and records it in `forged`.
    Otherwise the model's own "output" would read as the tool's, to the model as it goes on and to whoever
    parses the reply."""

    def __init__(self, tokenizer: Tokenizer, tools: Mapping[str, ToolFn], max_output_tokens: int = 256,
                 pool: Executor | None = None) -> None:
        unknown = set(tools) - set(TOOLS)
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)}; the format has {TOOLS}")
        self.tokenizer = tokenizer
        self.tools = dict(tools)
        self.max_output_tokens = max_output_tokens
        self.ends = {tokenizer.encode_special(f"<|{t}_end|>"): t for t in TOOLS}
        self.starts = {t: tokenizer.encode_special(f"<|{t}_start|>") for t in TOOLS}
        self.output = (tokenizer.encode_special("<|output_start|>"), tokenizer.encode_special("<|output_end|>"))
        self.calls: list[tuple[int, str, str, str]] = []  # (row, tool, input, output), for inspection
        self.forged: list[tuple[int, str]] = []  # (row, marker) of each row ended for writing a tool's marker
        self.pool = pool

    def __call__(self, row: int, tokens: Sequence[int]) -> list[int] | None | Future:
        """The tokens to feed `row` next ([] for none), None to end it, or with a `pool` a Future of the tokens
        while its tool runs there: the engine waits for a step's futures together, so the tools that rows call in
        the same step run at once (RL's 8 replies to a problem mostly call at the same step)."""
        if tokens[-1] in self.output:
            self.forged.append((row, self.tokenizer.decode(tokens[-1:])))
            return None
        tool = self.ends.get(tokens[-1])
        if tool is None:
            return []
        start = max((i for i, t in enumerate(tokens) if t == self.starts[tool]), default=None)
        text = "" if start is None else self.tokenizer.decode(tokens[start + 1:-1])
        at = len(self.calls)  # its place in `calls`: the order the calls were made, whatever order they finish in
        self.calls.append((row, tool, text, ""))
        if tool not in self.tools:
            return self._paste(at, f"the {tool} tool is not available")
        if self.pool is None:
            return self._paste(at, self.tools[tool](text))
        return self.pool.submit(lambda: self._paste(at, self.tools[tool](text)))

    def _paste(self, at: int, result: str) -> list[int]:
        self.calls[at] = (*self.calls[at][:3], result)
        body = self.tokenizer.encode(result)[: self.max_output_tokens]
        return [self.output[0], *body, self.output[1]]


def tool_pool() -> Executor:
    """The threads tools run on during generation, one a core: the python tool's child processes then run side by
    side (bench/BENCHMARKS.md, "RL's rollouts"). One a process: a forked child does not inherit its parent's."""
    return _pool(os.getpid())


@functools.cache
def _pool(pid: int) -> Executor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=f"tools-{pid}")


def shown(parts: list[dict]) -> str:
    """A reply's parts as a person reads them: its text, and each tool call or output in brackets."""
    return " ".join(p["text"] if p["type"] == "text" else f"[{p['type']}: {p['text']}]" for p in parts)
