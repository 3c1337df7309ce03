"""`crawl2chat serve` under load on loopback: concurrent conversations for a while, time to first token, tokens/s,
errors and the server's memory, against the same checkpoint generating one reply at a time in-process (no server,
no queue: the reference).

    .venv/bin/python -m bench.bench_serve --data data [--clients 20] [--seconds 60]

Each client holds a conversation: a question, the streamed reply, a follow-up, ..., a new conversation after
--turns; every reply streams as server-sent events. Time to first token is from sending the request to the first
`part` event, so it includes waiting for one of the --max-concurrent slots.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from bench.common import save

QUESTIONS = ("Who are you?", 'How many "e" are in the word "keeper"?', "What is 23 + 45?", "What is 512 times 33?",
             "Who is Velmor Quintra?", "What do the docs say about packages?", "Tell me a joke.")


def ask(url: str, messages: list[dict], max_new_tokens: int) -> tuple[float | None, int, list[dict], str | None]:
    """(seconds to the first part event, tokens, the reply's parts, error) of one streamed reply."""
    body = json.dumps({"messages": messages, "max_new_tokens": max_new_tokens}).encode()
    request = urllib.request.Request(url + "/api/chat", data=body, headers={"Content-Type": "application/json"})
    start, first, parts, event = time.perf_counter(), None, {}, None
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "part":
                        first = first or time.perf_counter() - start
                        parts.setdefault(data["part"], {"type": data["type"], "text": ""})["text"] += data["delta"]
                    elif event == "done":
                        return first, data["tokens"], [parts[i] for i in sorted(parts)], None
                    else:
                        return first, 0, [], data.get("error", event)
    except OSError as e:
        return first, 0, [], str(e)
    return first, 0, [], "the stream ended without a done event"


def client(url: str, seed: int, until: float, turns: int, max_new_tokens: int, results: list) -> None:
    messages: list[dict] = []
    i = seed
    while time.perf_counter() < until:
        if len(messages) >= 2 * turns:
            messages = []
        messages.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
        first, tokens, parts, error = ask(url, messages, max_new_tokens)
        results.append({"ttft": first, "tokens": tokens, "error": error, "end": time.perf_counter()})
        messages.append({"role": "assistant", "content": parts})
        if error:
            messages = []
        i += 1


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def reference(data: str, stage: str, max_new_tokens: int, n: int) -> tuple[float, float]:
    """(median seconds to the first token, tokens/s) of n replies generated one at a time in-process."""
    from pipeline.storage import Store
    from training.checkpoint import checkpoint_root
    from training.web.generation import load_chat_model

    chat = load_chat_model(Store(data), checkpoint_root(data, stage), stage=stage)
    firsts, tokens, started = [], 0, time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        for event in chat.stream([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], max_new_tokens):
            if "part" in event and len(firsts) == i:
                firsts.append(time.perf_counter() - t0)
            if event.get("done"):
                tokens += event["tokens"]
    return statistics.median(firsts), tokens / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data")
    p.add_argument("--stage", default="sft")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-concurrent", type=int, default=2)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "assets_defs.cli", "serve", "--data", args.data, "--stage",
                               args.stage, "--port", str(port), "--max-concurrent", str(args.max_concurrent)],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/api/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        ask(url, [{"role": "user", "content": "hi"}], 8)  # warm up
        memory = [rss_mb(server.pid)]
        results: list[dict] = []
        started = time.perf_counter()
        until = started + args.seconds
        threads = [threading.Thread(target=client, args=(url, i, until, args.turns, args.max_new_tokens, results))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            memory.append(rss_mb(server.pid))
        elapsed = time.perf_counter() - started
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    ok = [r for r in results if not r["error"]]
    ttft = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    tokens_per_s = sum(r["tokens"] for r in ok) / elapsed
    ref_ttft, ref_tokens_per_s = reference(args.data, args.stage, args.max_new_tokens, 10)
    figures = {"replies": len(results), "errors": len(results) - len(ok),
               "error_examples": sorted({r["error"] for r in results if r["error"]})[:3],
               "ttft_p50_s": ttft[len(ttft) // 2] if ttft else None,
               "ttft_p95_s": ttft[int(len(ttft) * 0.95)] if ttft else None, "tokens_per_s": tokens_per_s,
               "rss_mb_start": memory[0], "rss_mb_max": max(memory), "rss_mb_end": memory[-1],
               "reference_ttft_s": ref_ttft, "reference_tokens_per_s": ref_tokens_per_s, "seconds": elapsed}
    print(json.dumps(figures, indent=1))
    save("serve", [{"benchmark": f"serve: {args.clients} conversations for {args.seconds:.0f} s, {args.max_concurrent} "
                                 f"replies at once ({args.stage} checkpoint)", "reference": "one reply at a time, "
                    "in-process", "ours": tokens_per_s, "ref": ref_tokens_per_s, "unit": "tokens/s",
                    "ratio": tokens_per_s / ref_tokens_per_s}], **figures)


if __name__ == "__main__":
    main()
