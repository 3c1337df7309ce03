"""`crawl2chat generate` and `crawl2chat export`: the latest base checkpoint, sampled or written for transformers."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

console = Console()


def add_parsers(sub, common) -> None:
    gen = sub.add_parser("generate", help="complete a prompt with a checkpoint (the base model dreams web pages)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT",
                     help=r"end the completion where TEXT appears (repeatable; '\n' stands for a newline): with a "
                          "few-shot prompt of one example a line, --stop '\n' returns just the answer")
    _checkpoint_args(gen, common)
    export = sub.add_parser("export", help="write a Hugging Face model directory (config, safetensors, tokenizer)")
    export.add_argument("--out", required=True)
    _checkpoint_args(export, common)


def _checkpoint_args(p: argparse.ArgumentParser, common) -> None:
    p.add_argument("--checkpoint", default=None, help="checkpoint root (default: {data}/checkpoints/base)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    common(p)


def _load(args, load_config):
    """(model, tokenizer, checkpoint) with the tokenizer the checkpoint was trained with."""
    from pipeline.token_io import load_tokenizer
    from training.checkpoint import checkpoint_root, load_checkpoint

    config = load_config(args.config, args.data)
    store = config.store()
    root = args.checkpoint or checkpoint_root(config.data_root)
    checkpoint = load_checkpoint(root, args.step, config.storage_options(root))
    tokenizer, sha = load_tokenizer(store)
    wanted = checkpoint["config"].get("tokenizer_sha256")
    if wanted and wanted != sha:
        raise ValueError(f"checkpoint {root} step {checkpoint['step']} was trained with tokenizer {wanted[:12]}, "
                         f"but {store.uri('tokenizer')} holds {sha[:12]}")
    return checkpoint["model"], tokenizer, checkpoint


def cmd_generate(args, load_config) -> int:
    from training.engine import Engine, Sampling

    model, tok, checkpoint = _load(args, load_config)
    prompt = [tok.eot_id, *tok.encode(args.prompt)]  # documents start right after <|endoftext|> in the token shards
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, stop_tokens=(tok.eot_id,), seed=args.seed)
    console.print(f"[dim]step {checkpoint['step']}, {model.num_params():,} parameters[/dim]")
    sys.stdout.write(args.prompt)
    new: list[int] = []
    stops = [s.replace("\\n", "\n") for s in args.stop]
    hold = max(map(len, stops), default=1) - 1  # a stop text may begin in what is already decoded
    text, shown = "", ""
    for (token,) in Engine(model).generate([prompt], sampling):
        if token is None or token == tok.eot_id:
            break
        new.append(token)
        text = tok.decode(new)
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=None)
        if cut is not None:
            text = text[:cut]
            break
        ready = text[:len(text) - hold]
        if not ready.endswith("\ufffd"):  # wait for the rest of a character cut across tokens
            sys.stdout.write(ready[len(shown):])
            sys.stdout.flush()
            shown = ready
    sys.stdout.write(text[len(shown):] + "\n")
    return 0


def cmd_export(args, load_config) -> int:
    from training.export import export_hf

    model, tok, checkpoint = _load(args, load_config)
    out = export_hf(model, args.out, tok.to_files(), tok.eot_id)
    console.print(f"step {checkpoint['step']} exported to {out} (transformers: AutoModelForCausalLM.from_pretrained)")
    return 0
