"""Checkpoints through fsspec (local or s3://), written so that a killed save is never read back.

    {root}/step-{step:06d}/model.safetensors    weights (fp32)
    {root}/step-{step:06d}/optimizer.pt         optimizer state (torch.save)
    {root}/step-{step:06d}/state.json           loader position, RNG, counters: whatever resuming needs
    {root}/step-{step:06d}/config.json          GPTConfig, the tokenizer's sha256, step, tokens seen, losses
    {root}/step-{step:06d}/_COMMITTED           written last; a folder without it is ignored and overwritten

Every file is written whole (a temporary name renamed into place locally, one PUT on S3).

A checkpoint records the sha256 of the tokenizer it was trained with (the one pipeline/token_io.py records: of
tokenizer.tiktoken, the file that gives each token id its bytes). Loading it to train on under another tokenizer is
refused: a tokenizer retrained at the same size gives a model of the same shape, whose ids would silently mean
other text.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pipeline.storage import Store
from training.model import GPT, GPTConfig

COMMITTED = "_COMMITTED"
log = logging.getLogger(__name__)


class TokenizerMismatch(ValueError):
    """A checkpoint trained with another tokenizer than the one in use."""


def _store(root: str, storage_options: dict | None = None):
    store = Store(root, storage_options)
    return store, store.base


def checkpoint_root(data_root: str, stage: str = "base") -> str:
    """Where a training stage's checkpoints go by default: {data_root}/checkpoints/{stage} (base, sft, rl, ...)."""
    return f"{data_root.rstrip('/')}/checkpoints/{stage}"


def step_dir(step: int) -> str:
    return f"step-{step:06d}"


def save_checkpoint(
    root: str,
    step: int,
    model: GPT,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    meta: dict,
    storage_options: dict | None = None,
    *,
    tokenizer_sha256: str,
) -> str:
    """Writes one checkpoint; returns its URI. `meta` and the tokenizer's sha256 go into config.json next to the
    model config."""
    store, base = _store(root, storage_options)
    directory = posixpath.join(base, step_dir(step))
    # cloned: a tied head shares the embedding's tensor, and safetensors writes no shared tensors
    weights = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    store.write_bytes(posixpath.join(directory, "model.safetensors"), save_safetensors(weights))
    if optimizer is not None:
        buf = io.BytesIO()
        torch.save(optimizer.state_dict(), buf)
        store.write_bytes(posixpath.join(directory, "optimizer.pt"), buf.getvalue())
    store.write_bytes(posixpath.join(directory, "state.json"), json.dumps(state, indent=1).encode())
    config = {"model": model.config.to_dict(), "step": step, **meta, "tokenizer_sha256": tokenizer_sha256}
    store.write_bytes(posixpath.join(directory, "config.json"), json.dumps(config, indent=1).encode())
    store.write_bytes(posixpath.join(directory, COMMITTED), b"")
    return store.uri(step_dir(step))


def check_tokenizer(config: dict, tokenizer_sha256: str, checkpoint: str) -> None:
    """TokenizerMismatch naming both hashes and the checkpoint when its config.json records another tokenizer.

    A checkpoint that records none passes with a warning: it comes from before the sha256 was written (or from
    elsewhere), nothing says its tokenizer differs, and refusing it would leave no way to go on from it.
    """
    recorded = config.get("tokenizer_sha256")
    if recorded is None:
        log.warning("checkpoint %s records no tokenizer sha256; assuming it was trained with the tokenizer in use "
                    "(%s)", checkpoint, tokenizer_sha256)
    elif recorded != tokenizer_sha256:
        raise TokenizerMismatch(f"checkpoint {checkpoint} was trained with tokenizer sha256 {recorded}, but the "
                                f"tokenizer in use has sha256 {tokenizer_sha256}: the same ids would mean other text")


def committed_steps(root: str, storage_options: dict | None = None) -> list[int]:
    store, base = _store(root, storage_options)
    fs = store.fs
    if not fs.exists(base):
        return []
    steps = []
    for path in fs.ls(base, detail=False):
        name = posixpath.basename(path.rstrip("/"))
        if name.startswith("step-") and fs.exists(posixpath.join(path, COMMITTED)):
            steps.append(int(name[len("step-") :]))
    return sorted(steps)


def latest_step(root: str, storage_options: dict | None = None) -> int | None:
    steps = committed_steps(root, storage_options)
    return steps[-1] if steps else None


def _committed_dir(root: str, step: int | None, storage_options: dict | None) -> tuple[Store, str, int]:
    """(store, folder, step) of a committed checkpoint, the latest when `step` is None; FileNotFoundError if none."""
    store, base = _store(root, storage_options)
    step = latest_step(root, storage_options) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no committed checkpoint under {root}")
    directory = posixpath.join(base, step_dir(step))
    if not store.fs.exists(posixpath.join(directory, COMMITTED)):
        raise FileNotFoundError(f"checkpoint {directory} was never committed")
    return store, directory, step


def read_config(root: str, step: int | None = None, storage_options: dict | None = None) -> dict:
    """config.json of a committed checkpoint (the latest by default), without loading its weights."""
    store, directory, step = _committed_dir(root, step, storage_options)
    return {**json.loads(store.fs.cat_file(posixpath.join(directory, "config.json"))), "step": step}


def load_checkpoint(root: str, step: int | None = None, storage_options: dict | None = None, device="cpu",
                    tokenizer_sha256: str | None = None, model_class: type[GPT] = GPT) -> dict:
    """{"model": GPT, "config": config.json, "state": state.json, "optimizer": state dict or None}; the latest
    committed step when `step` is None. FileNotFoundError naming the root when there is none. With
    `tokenizer_sha256` (the tokenizer the model will be used with), TokenizerMismatch if it was trained with
    another (`check_tokenizer`). `model_class`: GPT or a subclass with more weights (training/reward_model.py's)."""
    store, directory, step = _committed_dir(root, step, storage_options)
    fs = store.fs
    config = json.loads(fs.cat_file(posixpath.join(directory, "config.json")))
    if tokenizer_sha256 is not None:
        check_tokenizer(config, tokenizer_sha256, store.uri(step_dir(step)))
    model = model_class(GPTConfig.from_dict(config["model"]))
    model.load_state_dict(load_safetensors(fs.cat_file(posixpath.join(directory, "model.safetensors"))))
    model.to(device)
    optimizer = None
    if fs.exists(posixpath.join(directory, "optimizer.pt")):
        optimizer = torch.load(io.BytesIO(fs.cat_file(posixpath.join(directory, "optimizer.pt"))), map_location=device)
    state = json.loads(fs.cat_file(posixpath.join(directory, "state.json")))
    return {"model": model, "config": config, "state": state, "optimizer": optimizer, "step": step}
