"""Pretrains a GPT on the token shards: next-token loss, AdamW, warmup then decay, DDP through torchrun.

    python -m training.pretrain --data data --depth 2 --max-steps 200
    torchrun --standalone --nproc_per_node 8 -m training.pretrain --data s3://bucket/crawl2chat --depth 20

Rank 0 logs, samples and writes checkpoints (training/checkpoint.py: weights, optimizer, loader position, RNG);
every rank evaluates its rows of the validation batches and the sums are all-reduced. A rerun with the same --out
resumes from the latest committed checkpoint and reproduces the losses the uninterrupted run would have had.
When Dagster launched the process (Pipes), each checkpoint is also reported to it as a custom message with its
losses, samples and loss history; otherwise progress goes to stdout. The script never imports dagster itself.
"""

from __future__ import annotations

import argparse
import base64
import math
import random
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from pipeline.storage import Store
from pipeline.token_io import load_tokenizer
from pipeline.tokenizer import Tokenizer
from training.checkpoint import (TokenizerMismatch, checkpoint_root, latest_step, load_checkpoint, save_checkpoint,
                                 step_dir)
from training.data import TokenStream, bytes_per_token
from training.distributed import Distributed
from training.engine import Engine, Sampling
from training.evals import ICL_PROBE_LEN, in_context_gain
from training.model import GPT, GPTConfig
from training.optim import MuonAdamW
from training.reporting import Reporter, fmt

# dense bf16 tensor-core peaks from NVIDIA's data sheets; the first name found in the device name wins
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
                   ("A100", 312e12), ("L4", 121e12))
SAMPLE_PROMPTS = ("The capital of France is", "Once upon a time,")
UNIGRAM_MAX_TOKENS = 50_000_000  # enough for a stable distribution over a 65k vocabulary
REPORTED = ("tokens_seen", "train_loss", "val_loss", "val_bpb", "unigram_loss", "icl_gain", "samples", "history",
            "token_shards")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="storage root holding token_shards/ and tokenizer/ (path or s3://)")
    p.add_argument("--crawls", default=None, help="comma-separated crawls (default: every crawl with token shards)")
    p.add_argument("--out", default=None, help="checkpoint root (default: {data}/checkpoints/base)")
    p.add_argument("--depth", type=int, default=2, help="the model's one size dial (width = 64 x depth)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--smear-keys", action="store_true",
                   help="each attention head mixes the previous token's key into each key (learned share): small "
                   "models learn to copy from their context in hundreds of steps (training/model.py)")
    p.add_argument("--qk-conv", type=int, default=0,
                   help="taps of a causal depthwise convolution over time on queries and keys (Primer's), 0 = none: "
                   "with 3, one layer matches two tokens of context and copies jump less (training/model.py)")
    p.add_argument("--tie-embeddings", action="store_true",
                   help="the output head shares the input embedding: small models learn to copy far sooner")
    p.add_argument("--batch-size", type=int, default=8, help="sequences a micro-batch, per process")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches an optimizer step")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1, help="final lr as a fraction of --lr")
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--decay", choices=("cosine", "linear"), default="cosine")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw",
                   help="muon: Muon on the blocks' matrices, AdamW on embeddings, head and gains")
    p.add_argument("--qk-optimizer", choices=("adamw", "muon"), default="adamw",
                   help="with --optimizer muon, who steps attention's query and key matrices: under Muon a small "
                   "model does not learn to copy from its context (BENCHMARKS.md)")
    p.add_argument("--muon-lr", type=float, default=0.02, help="Muon's peak lr (the schedule scales it with --lr)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global grad norm; 0 = no clipping")
    p.add_argument("--repeat-frac", type=float, default=0.0,
                   help="share of training rows that show a stretch of themselves again further on (training/data.py): "
                   "copying then pays from the first steps")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--sample-every", type=int, default=0, help="0 = samples only at the end")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="torch.compile; auto = on CUDA")
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                   help="autocast dtype; auto = bf16 on CUDA and on CPUs with bf16 instructions (AVX512-BF16, AMX)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if --out holds checkpoints")
    args = p.parse_args(argv)
    for name in ("depth", "seq_len", "batch_size", "grad_accum", "max_steps", "eval_every", "eval_batches",
                 "checkpoint_every", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.qk_conv < 0 or args.qk_conv == 1:
        p.error(f"--qk-conv must be 0 (none) or >= 2 taps, got {args.qk_conv}")
    if args.lr <= 0 or not 0 <= args.min_lr_frac <= 1 or args.warmup_steps < 0 or args.sample_every < 0:
        p.error(f"need --lr > 0, 0 <= --min-lr-frac <= 1, --warmup-steps >= 0 and --sample-every >= 0; got "
                f"{args.lr}, {args.min_lr_frac}, {args.warmup_steps}, {args.sample_every}")
    args.out = args.out or checkpoint_root(args.data)
    args.crawls = [c for c in args.crawls.split(",") if c] if args.crawls else None
    return args


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warmup over --warmup-steps, then cosine or linear decay to --min-lr-frac x --lr at --max-steps."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if args.decay == "cosine" else 1 - progress
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * shape)


def make_optimizer(model: GPT, args: argparse.Namespace, device: torch.device):
    """AdamW with decoupled weight decay on the matrices only (norm gains are left alone, as in nanoGPT); with
    --optimizer muon, the matrices inside the blocks go to Muon instead (training/optim.py), except attention's
    queries and keys, which stay with AdamW unless --qk-optimizer muon."""
    def gain(name: str, p) -> bool:  # norms' gains, smear gates and qk_conv's taps: no decay, never Muon
        return p.dim() < 2 or name.endswith("qk_taps")

    vectors = [p for name, p in model.named_parameters() if gain(name, p)]
    matrices = [p for name, p in model.named_parameters() if not gain(name, p)]
    if args.optimizer == "muon":
        hidden = [p for name, p in model.named_parameters() if not gain(name, p) and name.startswith("layers.")
                  and (args.qk_optimizer == "muon" or not name.endswith(("q_proj.weight", "k_proj.weight")))]
        outer = [p for p in matrices if not any(p is h for h in hidden)]
        groups = [{"params": outer, "weight_decay": args.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
        return MuonAdamW(hidden, groups, lr=args.lr, muon_lr=args.muon_lr, fused=device.type == "cuda")
    groups = [{"params": matrices, "weight_decay": args.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


def use_bf16(dtype: str, device: torch.device) -> bool:
    """bf16 autocast on CUDA, and on CPUs that run bf16 natively: there it halves the step time (bench_pretrain)."""
    if dtype != "auto":
        return dtype == "bfloat16"
    if device.type == "cuda":
        return True
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "cuda": [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(
            [torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def unigram_logprobs(train: TokenStream, vocab_size: int) -> torch.Tensor:
    """log p(token) of the train split's unigram distribution, add-one smoothed so unseen tokens stay finite."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for tokens in train.iter_tokens(UNIGRAM_MAX_TOKENS):
        counts += np.bincount(tokens, minlength=vocab_size)[:vocab_size]
    return torch.from_numpy(np.log(counts / counts.sum()))


@torch.no_grad()
def evaluate(model, val: TokenStream, n_batches: int, token_bytes: torch.Tensor, unigram: torch.Tensor,
             dd: Distributed, autocast) -> dict:
    """Mean val loss (nats/token), bits per byte and the unigram baseline's loss on the same target tokens.

    Bits per byte follow nanochat: targets that are special tokens (document separators, 0 bytes) are left out
    of both sums, so the number measures text alone and is comparable across tokenizers.
    """
    sums = torch.zeros(5, dtype=torch.float64, device=dd.device)  # nats, tokens, nats on text, bytes, unigram nats
    for i in range(min(n_batches, val.batches_per_epoch)):
        x, y = (t.to(dd.device) for t in val.get(i))
        with autocast:
            logits = model(x)
        nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").double()
        n_bytes = token_bytes[y.flatten()]
        sums += torch.stack([nll.sum(), torch.tensor(float(nll.numel()), device=dd.device, dtype=torch.float64),
                             (nll * (n_bytes > 0)).sum(), n_bytes.sum().double(), -unigram[y.flatten()].sum()])
    nats, tokens, text_nats, n_bytes, unigram_nats = dd.sum(sums).tolist()
    return {"val_loss": nats / tokens, "val_bpb": text_nats / math.log(2) / n_bytes if n_bytes else None,
            "unigram_loss": unigram_nats / tokens}


def generate_samples(model: GPT, tokenizer: Tokenizer, seed: int) -> list[str]:
    prompts = [[tokenizer.eot_id, *tokenizer.encode(text)] for text in SAMPLE_PROMPTS]
    sampling = Sampling(max_new_tokens=32, temperature=0.8, top_k=50, stop_tokens=(tokenizer.eot_id,), seed=seed)
    outputs = Engine(model).generate_all(prompts, sampling)
    model.train()
    return [text + tokenizer.decode([t for t in out if t != tokenizer.eot_id])
            for text, out in zip(SAMPLE_PROMPTS, outputs)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dd = Distributed(args.device, "pretrain")
    master = dd.rank == 0
    store = Store(args.data)
    try:  # everything that can be wrong with the data, before any process waits on another
        train, val = (TokenStream(store, args.crawls, split, args.seq_len, args.batch_size, dd.rank, dd.world_size,
                                  seed=args.seed, repeat_frac=args.repeat_frac if split == "train" else 0.0)
                      for split in ("train", "val"))
        tokenizer, tokenizer_sha = load_tokenizer(store)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"pretrain: {e}") from None
    if tokenizer_sha != train.tokenizer_sha256:
        raise SystemExit(f"pretrain: the token shards under {store.uri('token_shards')} were written by tokenizer "
                         f"{train.tokenizer_sha256[:12]}, but {store.uri('tokenizer')} holds {tokenizer_sha[:12]}: "
                         "rematerialize token_shards")

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    cuda = dd.device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(dd.device.type, dtype=torch.bfloat16) if use_bf16(args.dtype, dd.device) else nullcontext()

    config = GPTConfig(vocab_size=tokenizer.n_vocab, depth=args.depth, seq_len=args.seq_len,
                       tie_embeddings=args.tie_embeddings, smear_keys=args.smear_keys, qk_conv=args.qk_conv)
    model = GPT(config).to(dd.device)
    optimizer = make_optimizer(model, args, dd.device)
    step, tokens_seen, history, samples, last_eval, resumed = 0, 0, [], [], {}, None
    resume_from = None if args.no_resume else latest_step(args.out)
    if resume_from is not None:
        try:
            ckpt = load_checkpoint(args.out, resume_from, device=dd.device, tokenizer_sha256=tokenizer_sha)
        except TokenizerMismatch as e:
            raise SystemExit(f"pretrain: {e} (the tokenizer in use: {store.uri('tokenizer')}); pass --no-resume or "
                             "another --out") from None
        if GPTConfig.from_dict(ckpt["config"]["model"]) != config:  # older checkpoints lack newer defaults
            raise SystemExit(f"pretrain: the checkpoint {args.out} step {resume_from} is a {ckpt['config']['model']} "
                             f"model, not {config.to_dict()}: pass --no-resume or another --out")
        model.load_state_dict(ckpt["model"].state_dict())
        optimizer.load_state_dict(ckpt["optimizer"])
        train.load_state_dict(ckpt["state"]["loader"])
        set_rng_state(ckpt["state"]["rng"])
        resumed = {"checkpoint": f"{args.out.rstrip('/')}/{step_dir(resume_from)}",
                   "step": resume_from, **{k: ckpt["config"].get(k) for k in REPORTED}}
        step, tokens_seen = resume_from, ckpt["state"]["tokens_seen"]
        history, samples = resumed["history"], resumed["samples"]
        last_eval = {k: resumed[k] for k in ("val_loss", "val_bpb", "icl_gain") if resumed[k] is not None}

    dd.init()
    try:
        with Reporter(master) as reporter:
            if resumed is not None and resumed["step"] >= args.max_steps:
                reporter.log(f"{resumed['checkpoint']} already reaches --max-steps {args.max_steps}; nothing to do")
                reporter.checkpoint(resumed)
                return 0
            if resumed is not None:
                reporter.log(f"resuming from {resumed['checkpoint']}")
            return train_loop(args, dd, model, optimizer, train, val, tokenizer, tokenizer_sha, reporter, autocast,
                              step, tokens_seen, history, samples, last_eval)
    finally:
        dd.close()


def train_loop(args, dd: Distributed, model: GPT, optimizer, train: TokenStream, val: TokenStream,
               tokenizer: Tokenizer, tokenizer_sha: str, reporter: Reporter, autocast, step: int, tokens_seen: int,
               history: list, samples: list, last_eval: dict) -> int:
    master = dd.rank == 0
    cuda = dd.device.type == "cuda"
    compiled = torch.compile(model) if args.compile == "on" or (args.compile == "auto" and cuda) else model
    trained = compiled
    if dd.enabled:
        trained = DistributedDataParallel(compiled, device_ids=[dd.local_rank] if cuda else None)
    tokens_per_step = args.batch_size * dd.world_size * args.grad_accum * args.seq_len
    token_bytes = torch.from_numpy(bytes_per_token(tokenizer)).to(dd.device)
    unigram = unigram_logprobs(train, tokenizer.n_vocab).to(dd.device)
    baseline = evaluate(compiled, val, args.eval_batches, token_bytes, unigram, dd, autocast)["unigram_loss"]
    flops, peak = model.flops_per_token(), peak_flops(dd.device)
    reporter.log(f"{model.num_params():,} parameters, depth {args.depth}, {dd.world_size} process(es) on "
                 f"{dd.device.type}; {train.n_tokens:,} train / {val.n_tokens:,} val tokens; "
                 f"{tokens_per_step:,} tokens a step; unigram baseline {baseline:.4f} nats/token")

    start_step, timed_tokens, timed_seconds = step, 0, 0.0
    train_loss = float("nan")
    for step in reporter.steps(start_step, args.max_steps, "pretrain"):
        started = time.perf_counter()
        lr = lr_at(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss_sum = torch.zeros((), device=dd.device)
        for micro in range(args.grad_accum):
            x, y = (t.to(dd.device, non_blocking=True) for t in next(train))
            last_micro = micro == args.grad_accum - 1
            with trained.no_sync() if dd.enabled and not last_micro else nullcontext():
                with autocast:
                    loss = trained(x, y)
                (loss / args.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = dd.sum(loss_sum / args.grad_accum).item() / dd.world_size
        seconds = time.perf_counter() - started
        done, tokens_seen = step + 1, tokens_seen + tokens_per_step
        if done > start_step + 1 or args.max_steps == start_step + 1:  # the first step pays for compilation
            timed_tokens, timed_seconds = timed_tokens + tokens_per_step, timed_seconds + seconds
        tokens_per_s = tokens_per_step / seconds
        mfu = flops * tokens_per_s / (peak * dd.world_size) if peak else None
        entry = {"step": done, "train_loss": train_loss}
        history.append(entry)

        last = done == args.max_steps
        checkpoint_now = done % args.checkpoint_every == 0 or last
        if done % args.eval_every == 0 or checkpoint_now:
            last_eval = evaluate(compiled, val, args.eval_batches, token_bytes, unigram, dd, autocast)
            if args.seq_len >= 2 * ICL_PROBE_LEN:
                last_eval["icl_gain"] = in_context_gain(model, tokenizer.n_vocab, autocast=autocast)
            entry.update(val_loss=last_eval["val_loss"], val_bpb=last_eval["val_bpb"])
            reporter.log(f"step {done}: val loss {last_eval['val_loss']:.4f} (unigram {baseline:.4f}), "
                         f"val bpb {fmt(last_eval['val_bpb'])}, in-context gain {fmt(last_eval.get('icl_gain'))}")
        if master and ((args.sample_every and done % args.sample_every == 0) or last):
            samples = generate_samples(model, tokenizer, args.seed + done)
            for text in samples:
                reporter.log(f"sample at step {done}: {text!r}")
        if master:
            reporter.postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}")
            if done % args.log_every == 0 or last:
                reporter.log(f"step {done}/{args.max_steps} | loss {train_loss:.4f} | lr {lr:.2e} | grad norm "
                             f"{grad_norm.item():.3f} | {tokens_per_s:,.0f} tok/s | mfu "
                             f"{'n/a' if mfu is None else f'{mfu:.1%}'}")
        if master and checkpoint_now:
            meta = {"tokens_seen": tokens_seen, "train_loss": train_loss, "token_shards": sorted(
                        {f"{s.crawl}/{s.shard}" for s in (*train.segments, *val.segments)}),  # the data's lineage
                    **last_eval, "unigram_loss": baseline, "samples": samples, "history": history}
            state = {"loader": train.state_dict(), "step": done, "tokens_seen": tokens_seen,
                     "rng": rng_state(), "schedule": {"lr": args.lr, "min_lr_frac": args.min_lr_frac,
                                                      "warmup_steps": args.warmup_steps, "decay": args.decay,
                                                      "max_steps": args.max_steps},
                     "world_size": dd.world_size}
            uri = save_checkpoint(args.out, done, model, optimizer, state, meta, tokenizer_sha256=tokenizer_sha)
            reporter.checkpoint({"checkpoint": uri, "step": done, **{k: meta.get(k) for k in REPORTED}})
    if master:
        tokens_per_s = timed_tokens / timed_seconds if timed_seconds else None
        mfu = flops * tokens_per_s / (peak * dd.world_size) if peak and tokens_per_s else None
        summary = {"steps": args.max_steps, "tokens_seen": tokens_seen,
                   "tokens_per_s": tokens_per_s, "mfu": mfu, "device": str(dd.device), "world_size": dd.world_size,
                   "params": model.num_params(), "flops_per_token": flops, "train_loss": train_loss,
                   **last_eval, "unigram_loss": baseline, "samples": samples, "history": history,
                   "args": {k: v for k, v in vars(args).items()}}
        out = Store(args.out)
        out.write_json(out.path("train_summary.json"), summary)
        reporter.log(f"done: {args.max_steps} steps, {tokens_per_s or 0:,.0f} tok/s, train loss {train_loss:.4f}, "
                     f"val loss {fmt(last_eval.get('val_loss'))} (unigram {baseline:.4f})")
    if dd.enabled:
        dist.barrier()  # every rank leaves after rank 0 has written its last checkpoint
    return 0


if __name__ == "__main__":
    sys.exit(main())
