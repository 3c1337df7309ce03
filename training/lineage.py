"""A checkpoint's lineage: the checkpoints it started from, back to pretraining, and the tokenizer, token shards and
crawls under them (`crawl2chat trace CHECKPOINT`). A document's is pipeline/trace.py's."""

from __future__ import annotations

import posixpath

from pipeline.storage import PartitionMissing, Store
from training.checkpoint import read_config, step_dir


def trace_checkpoint(root: str, step: int | None = None, storage_options: dict | None = None,
                     data_root: str | None = None) -> list[dict]:
    """The checkpoint and every one it started from (base_checkpoint, and a reward model's for RLHF), newest first:
    [{"checkpoint", "stage", "step", "tokenizer_sha256", "token_shards" (pretraining), "crawls", ...}]. With
    `data_root`, the tokenizer asset's record is matched by its sha256."""
    chain, queue, seen = [], [(root, step)], set()
    while queue:
        where, at = queue.pop(0)
        config = read_config(where, at, storage_options)
        uri = f"{where.rstrip('/')}/{step_dir(config['step'])}"
        if uri in seen:
            continue
        seen.add(uri)
        shards = config.get("token_shards") or []
        entry = {"checkpoint": uri, "stage": config.get("stage", "base"), "step": config["step"],
                 "tokenizer_sha256": config.get("tokenizer_sha256"),
                 **({"token_shards": shards, "crawls": sorted({s.split("/")[0] for s in shards})} if shards else {})}
        for link in ("base_checkpoint", "reward_checkpoint"):
            if config.get(link):
                entry[link] = config[link]
                parent, name = posixpath.split(_resolve(config[link], data_root).rstrip("/"))
                queue.append((parent, int(name.removeprefix("step-"))))
        chain.append(entry)
    if data_root is not None:
        _tokenizer_record(Store(data_root, storage_options), chain)
    return chain


def _resolve(link: str, data_root: str | None) -> str:
    """A recorded checkpoint link as a path to read: links are written as the run saw them, so a relative data root
    (`data/checkpoints/sft/...`) is found again under `data_root` from another working directory."""
    if "://" in link or posixpath.isabs(link) or data_root is None or "checkpoints/" not in link:
        return link
    return f"{data_root.rstrip('/')}/checkpoints/{link.split('checkpoints/', 1)[1]}"


def _tokenizer_record(store: Store, chain: list[dict]) -> None:
    try:
        manifest = store.manifest("tokenizer", "all", "all")
    except PartitionMissing:
        return
    for entry in chain:
        if entry.get("tokenizer_sha256") == manifest.get("sha256"):
            entry["tokenizer"] = {"uri": store.uri("tokenizer"), **{k: v for k, v in manifest.get("stats", {}).items()
                                                                 if isinstance(v, (int, float, str, list))}}
