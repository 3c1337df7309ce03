"""What the post-training scripts (sft, rl) share: the checkpoint they start from, resuming their own."""

from __future__ import annotations

import torch

from pipeline.storage import Store
from pipeline.token_io import load_tokenizer
from training.chat import shown
from training.checkpoint import TokenizerMismatch, latest_step, load_checkpoint, step_dir
from training.model import GPT


def load_start(store: Store, root: str, device: torch.device, script: str) -> tuple:
    """(tokenizer, tokenizer_sha, checkpoint, "root/step-NNNNNN") of the latest checkpoint under `root`; SystemExit
    naming the script when there is none, or when it was trained with another tokenizer than the store holds."""
    try:
        tokenizer, sha = load_tokenizer(store)
        start = load_checkpoint(root, device=device, tokenizer_sha256=sha)
    except TokenizerMismatch as e:
        raise SystemExit(f"{script}: {e} (the tokenizer in use: {store.uri('tokenizer')})") from None
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"{script}: {e}") from None
    return tokenizer, sha, start, f"{root.rstrip('/')}/{step_dir(start['step'])}"


def resume(out: str, model, optimizer, device: torch.device, tokenizer_sha: str, script: str,
           model_class: type[GPT] = GPT) -> tuple[int, list[dict]]:
    """Loads the latest checkpoint under `out` into model and optimizer: (its step, its history), or (0, []).
    SystemExit naming the script when it was trained with another tokenizer than `tokenizer_sha`."""
    step = latest_step(out)
    if step is None:
        return 0, []
    try:
        ckpt = load_checkpoint(out, step, device=device, tokenizer_sha256=tokenizer_sha, model_class=model_class)
    except TokenizerMismatch as e:
        raise SystemExit(f"{script}: {e}; pass another --out") from None
    model.load_state_dict(ckpt["model"].state_dict())
    optimizer.load_state_dict(ckpt["optimizer"])
    return step, ckpt["config"]["history"]


def show(question: str, parts: list[dict]) -> str:
    """A reply as one readable exchange, tool calls and outputs in brackets."""
    return f"user: {question}\nassistant: {shown(parts)}"
