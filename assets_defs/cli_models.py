"""`crawl2chat generate`, `chat`, `serve`, `label` and `export`: a checkpoint sampled, talked to (in the terminal or
a web page), its answers ranked on a page, or written for transformers."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

console = Console()


CHAT_STAGES = ("sft", "rl", "rlhf")  # in training order


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
    chat = sub.add_parser("chat", help="talk to the fine-tuned model (tools: python sandbox, search over the crawl)")
    chat.add_argument("--prompt", default=None, help="answer one message and exit (default: read turns from stdin)")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--stage", choices=CHAT_STAGES, default=None,
                      help="which fine-tuned checkpoints (default: rl when it has one, else sft)")
    _checkpoint_args(chat, common, stage=None)
    serve = sub.add_parser("serve", help="a chat page on 127.0.0.1 streaming the chat model's replies, tools shown")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--max-new-tokens", type=int, default=256, help="the most tokens a reply may ask for")
    serve.add_argument("--max-concurrent", type=int, default=2, help="replies written at once")
    serve.add_argument("--max-waiting", type=int, default=32, help="requests that wait their turn; more get 429")
    serve.add_argument("--message-chars", type=int, default=4000)
    serve.add_argument("--conversation-chars", type=int, default=16000)
    serve.add_argument("--stage", choices=CHAT_STAGES, default=None, help="default: the latest stage with a checkpoint")
    _checkpoint_args(serve, common, stage=None)
    label = sub.add_parser("label", help="a page on 127.0.0.1 to rank the chat model's answers (for reward_model)")
    label.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    label.add_argument("--port", type=int, default=8766)
    label.add_argument("--k", type=int, default=4, help="answers to rank a prompt")
    label.add_argument("--max-new-tokens", type=int, default=64)
    label.add_argument("--prompts", default=None, help="a text file, one prompt a line (default: built-in prompts)")
    label.add_argument("--db", default=None, help="the rankings' SQLite file (default: $CRAWL2CHAT_LABELS_DB, a "
                       "postgresql:// URL or a path, else {data}/labels/rankings.sqlite; preference_rankings reads "
                       "the same)")
    label.add_argument("--stage", choices=CHAT_STAGES, default=None, help="default: the latest stage with a checkpoint")
    _checkpoint_args(label, common, stage=None)
    export = sub.add_parser("export", help="write a Hugging Face model directory (config, safetensors, tokenizer)")
    export.add_argument("--out", required=True)
    _checkpoint_args(export, common)


def _checkpoint_args(p: argparse.ArgumentParser, common, stage: str | None = "base") -> None:
    where = f"{{data}}/checkpoints/{stage or '{stage}'}"
    p.add_argument("--checkpoint", default=None, help=f"checkpoint root (default: {where})")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    if stage:
        p.set_defaults(stage=stage)
    common(p)


def _load(args, load_config):
    """(model, tokenizer, checkpoint) with the tokenizer the checkpoint was trained with."""
    from pipeline.token_io import load_tokenizer
    from training.checkpoint import check_tokenizer, checkpoint_root, load_checkpoint, step_dir

    config = load_config(args.config, args.data)
    store = config.store()
    if args.stage is None:  # chat: the last post-training stage that has a checkpoint
        args.stage = next((stage for stage in reversed(CHAT_STAGES) if _has_checkpoint(config, stage)), CHAT_STAGES[0])
    root = args.checkpoint or checkpoint_root(config.data_root, args.stage)
    checkpoint = load_checkpoint(root, args.step, config.storage_options(root))
    tokenizer, sha = load_tokenizer(store)
    check_tokenizer(checkpoint["config"], sha, f"{root.rstrip('/')}/{step_dir(checkpoint['step'])}")
    return checkpoint["model"], tokenizer, checkpoint, store


def _has_checkpoint(config, stage: str) -> bool:
    from training.checkpoint import checkpoint_root, latest_step

    root = checkpoint_root(config.data_root, stage)
    return latest_step(root, config.storage_options(root)) is not None


def cmd_generate(args, load_config) -> int:
    from training.engine import Engine, Sampling

    model, tok, checkpoint, _ = _load(args, load_config)
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


def cmd_chat(args, load_config) -> int:
    from training.chat import ToolCalls, parse_reply, render_prompt
    from training.engine import Engine, Sampling
    from training.tools import available_tools

    model, tok, checkpoint, store = _load(args, load_config)
    tools = available_tools(store)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        stop_tokens=(tok.encode_special("<|im_end|>"),), seed=args.seed)
    console.print(f"[dim]{args.stage} step {checkpoint['step']}, {model.num_params():,} parameters; tools: "
                  f"{', '.join(tools)}[/dim]")
    interactive = args.prompt is None
    messages: list[dict] = []
    while True:
        text = args.prompt if not interactive else _read_turn()
        if text is None:
            return 0
        messages.append({"role": "user", "content": text})
        prompt = render_prompt(tok, messages)
        if len(prompt) >= model.config.seq_len:
            console.print(f"[red]the conversation fills the model's {model.config.seq_len} tokens; starting over[/red]")
            messages = [messages[-1]]
            prompt = render_prompt(tok, messages)
            if len(prompt) >= model.config.seq_len:
                console.print("[red]that message alone is too long for the model[/red]")
                messages = []
                if not interactive:
                    return 2
                continue
        reply = parse_reply(tok, Engine(model).generate_all([prompt], sampling, ToolCalls(tok, tools))[0])
        for part in reply:
            if part["type"] == "text":
                console.print(part["text"], markup=False, highlight=False)
            else:
                console.print(f"[dim]\\[{part['type']}] {part['text']}[/dim]", highlight=False)
        messages.append({"role": "assistant", "content": reply or ""})
        if not interactive:
            return 0


def _read_turn() -> str | None:
    try:
        text = input("you> ")
    except EOFError:
        return None
    return None if text.strip() in ("/quit", "/exit") else text


def _chat_model(args, load_config):
    from training.tools import available_tools
    from training.web.generation import ChatModel

    model, tok, checkpoint, store = _load(args, load_config)
    return ChatModel(model, tok, available_tools(store), f"{args.stage} step {checkpoint['step']}"), store


def _listen(app, args, what: str) -> int:
    import uvicorn

    console.print(f"{what} on http://{args.host}:{args.port}/ (Ctrl+C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_serve(args, load_config) -> int:
    from training.web.serve import Limits, create_app

    limits = Limits(args.message_chars, args.conversation_chars, args.max_new_tokens, args.max_concurrent,
                    args.max_waiting)
    chat, _ = _chat_model(args, load_config)
    return _listen(create_app(chat, limits), args, f"chat with {chat.name}")


def cmd_label(args, load_config) -> int:
    import os
    from pathlib import Path

    from training.preferences import describe, open_rankings
    from training.web.label import PROMPTS, create_app

    chat, store = _chat_model(args, load_config)
    db = args.db or os.environ.get("CRAWL2CHAT_LABELS_DB")
    if db is None and "://" in store.root:
        raise ValueError("the data root is not local: pass --db PATH or set CRAWL2CHAT_LABELS_DB")
    db = db or str(Path(store.root) / "labels" / "rankings.sqlite")
    prompts = PROMPTS if args.prompts is None else tuple(
        line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip())
    rankings = open_rankings(db)
    try:
        return _listen(create_app(chat, rankings, prompts, args.k, args.max_new_tokens), args,
                       f"ranking {chat.name}'s answers into {describe(db)}")
    finally:
        rankings.close()


def cmd_export(args, load_config) -> int:
    from training.export import export_hf

    model, tok, checkpoint, _ = _load(args, load_config)
    out = export_hf(model, args.out, tok.to_files(), tok.eot_id)
    console.print(f"step {checkpoint['step']} exported to {out} (transformers: AutoModelForCausalLM.from_pretrained)")
    return 0
