"""A chat checkpoint behind a page: the prompt a conversation makes, a reply streamed as it is generated (tools
live, the page told which part each piece of text belongs to), and k distinct answers to rank."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from training.chat import ToolCalls, parse_reply, render_prompt, shown, tool_pool, validate
from training.engine import Engine, Sampling


class TooLong(ValueError):
    """A conversation that leaves the model no room to answer."""


@dataclass
class ChatModel:
    model: object  # training.model.GPT
    tokenizer: object  # pipeline.tokenizer.Tokenizer
    tools: dict
    name: str  # "rl step 20": what the pages say they talk to

    def __post_init__(self) -> None:
        self.im_end = self.tokenizer.encode_special("<|im_end|>")
        self.lock = threading.Lock()  # one forward pass at a time: generations take turns a token at a time

    def prompt(self, messages: Sequence[Mapping]) -> list[int]:
        """The ids of the conversation plus the assistant's turn header. A user's text is encoded as ordinary text,
        so a special-token string typed in a message ("<|im_end|>") is those characters, never the control token.
        ValueError for a malformed conversation, TooLong when it fills the model's context."""
        validate(messages)
        ids = render_prompt(self.tokenizer, messages)
        if len(ids) >= self.model.config.seq_len:
            raise TooLong(f"the conversation is {len(ids)} tokens; the model reads {self.model.config.seq_len}")
        return ids

    def stream(self, messages: Sequence[Mapping], max_new_tokens: int, temperature: float = 0.0,
               seed: int | None = None, cancelled: threading.Event | None = None) -> Iterator[dict]:
        """The reply as events: {"part": i, "type": "text" | "python" | "search" | "python_output" | ...,
        "delta": more text of part i}, then {"done": True, "tokens": n, "finished": whether it ended itself}.
        Stops early, without the done event, once `cancelled` is set (the page's stop button)."""
        prompt = self.prompt(messages)
        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, stop_tokens=(self.im_end,),
                            seed=seed)
        reply: list[int] = []
        sent: list[tuple[str, str]] = []  # (type, text) of each part as the page has it
        steps = Engine(self.model).generate([prompt], sampling, ToolCalls(self.tokenizer, self.tools))
        while True:
            if cancelled is not None and cancelled.is_set():
                return
            with self.lock:
                step = next(steps, None)
            if step is None or step[0] is None:
                break
            reply.append(step[0])
            yield from self._deltas(parse_reply(self.tokenizer, reply), sent)
        yield {"done": True, "tokens": len(reply), "finished": bool(reply) and reply[-1] == self.im_end}

    @staticmethod
    def _deltas(parts: list[dict], sent: list[tuple[str, str]]) -> Iterator[dict]:
        for i, part in enumerate(parts):
            text = part["text"].rstrip("\ufffd")  # a character cut across tokens: wait for its other bytes
            if i == len(sent):
                sent.append((part["type"], ""))
            known = sent[i][1]
            if text != known and text.startswith(known):
                sent[i] = (part["type"], text)
                yield {"part": i, "type": part["type"], "delta": text[len(known):]}

    def answers(self, prompt: str, k: int, max_new_tokens: int, seed: int, tries: int = 3) -> list[str]:
        """Up to k distinct finished answers to one user prompt, sampled at temperature 1 from `seed` (the same
        answers for the same prompt and seed, so several labelers rank the same ones). Tool calls are run; an
        answer is the text a user reads, tool calls shown in brackets."""
        ids = self.prompt([{"role": "user", "content": prompt}])
        found: list[str] = []
        for attempt in range(tries):
            sampling = Sampling(max_new_tokens=max_new_tokens, temperature=1.0, stop_tokens=(self.im_end,))
            with self.lock:
                tools = ToolCalls(self.tokenizer, self.tools, pool=tool_pool())  # the k replies' calls side by side
                replies = Engine(self.model).generate_all([ids] * k, sampling, tools,
                                                          row_seeds=[seed * 7919 + attempt * k + j for j in range(k)])
            for reply in replies:
                text = shown(parse_reply(self.tokenizer, reply)).strip()
                if text and text not in found and len(found) < k:
                    found.append(text)
            if len(found) == k:
                break
        return found


def load_chat_model(store, root: str, step: int | None = None, storage_options: dict | None = None,
                    stage: str = "chat") -> ChatModel:
    """The checkpoint under `root` (the latest step by default) with the store's tokenizer, refused if it was
    trained with another, and the tools the store has (python; search when it has an index)."""
    from pipeline.token_io import load_tokenizer
    from training.checkpoint import load_checkpoint
    from training.tools import available_tools

    tokenizer, sha = load_tokenizer(store)
    checkpoint = load_checkpoint(root, step, storage_options, tokenizer_sha256=sha)
    return ChatModel(checkpoint["model"], tokenizer, available_tools(store), f"{stage} step {checkpoint['step']}")
