"""`crawl2chat serve`: a chat page and its API, an ASGI app (Starlette) run by uvicorn on 127.0.0.1.

    GET  /            the page: the conversation is kept in the page, sent whole with each message
    POST /api/chat    {"messages": [{role, content}], "max_new_tokens": n, "temperature": t} -> text/event-stream
    GET  /api/status  the model, the limits, generations running and waiting

A reply streams as server-sent events: `part` events ({"part": i, "type": "text" | "python" | "python_output" |
"search" | "search_output", "delta": text}), then one `done` ({"tokens": n, "finished": bool}), or one `error`.
A page that goes away (its stop button aborts the request) stops its generation at the next token.

Limits, each refused with a clear error before any work (HTTP 413 or 400): characters a message, characters a
conversation, max_new_tokens; and concurrent generations: `max_concurrent` run, `max_waiting` more wait their turn,
the next gets 429. Special-token strings a user types are text (training/web/generation.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from training.web.generation import ChatModel, TooLong

PAGE = Path(__file__).with_name("chat.html")


@dataclass(frozen=True)
class Limits:
    message_chars: int = 4000
    conversation_chars: int = 16000
    max_new_tokens: int = 256
    max_concurrent: int = 2
    max_waiting: int = 32

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < (0 if name == "max_waiting" else 1):
                raise ValueError(f"Limits.{name} must be >= {0 if name == 'max_waiting' else 1}, got {value}")


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_request(body, limits: Limits) -> tuple[list[dict], int, float]:
    """(messages, max_new_tokens, temperature) of a chat request; Refused with the status and reason otherwise."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise Refused(400, "send {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}")
    messages = body["messages"]
    if not all(isinstance(m, dict) for m in messages):
        raise Refused(400, "each message is {\"role\": ..., \"content\": ...}")
    sizes = [len(json.dumps(m.get("content", ""), ensure_ascii=False)) for m in messages]
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user" or not isinstance(last.get("content"), str):
        raise Refused(400, "the conversation must end with the user's message, as text")
    if len(last["content"]) > limits.message_chars:
        raise Refused(413, f"the message is {len(last['content'])} characters; the limit is {limits.message_chars}")
    if sum(sizes) > limits.conversation_chars:
        raise Refused(413, f"the conversation is {sum(sizes)} characters; the limit is {limits.conversation_chars}: "
                      "start a new one")
    max_new = body.get("max_new_tokens", min(128, limits.max_new_tokens))
    if not isinstance(max_new, int) or not 1 <= max_new <= limits.max_new_tokens:
        raise Refused(400, f"max_new_tokens must be an integer from 1 to {limits.max_new_tokens}")
    temperature = body.get("temperature", 0.0)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise Refused(400, "temperature must be a number from 0 to 2")
    return messages, max_new, float(temperature)


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(chat: ChatModel, limits: Limits = Limits()) -> Starlette:
    state = {"running": 0, "waiting": 0}
    slots = asyncio.Semaphore(limits.max_concurrent)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text().replace("{{MODEL}}", chat.name))

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"model": chat.name, "tools": sorted(chat.tools), "limits": asdict(limits), **state})

    async def chat_api(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        try:
            messages, max_new, temperature = check_request(body, limits)
            chat.prompt(messages)  # malformed or too long: refused before queueing
        except Refused as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except TooLong as e:
            return JSONResponse({"error": f"{e}: start a new conversation"}, status_code=413)
        except (ValueError, AttributeError, TypeError) as e:
            return JSONResponse({"error": f"malformed conversation: {e}"}, status_code=400)
        if slots.locked() and state["waiting"] >= limits.max_waiting:
            return JSONResponse({"error": f"busy: {state['running']} replies being written and {state['waiting']} "
                                 "waiting; try again shortly"}, status_code=429)
        return StreamingResponse(_generate(request, messages, max_new, temperature), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _generate(request: Request, messages, max_new, temperature):
        state["waiting"] += 1
        try:
            await slots.acquire()
        finally:
            state["waiting"] -= 1
        state["running"] += 1
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def watch() -> None:  # the page went away (its stop button): stop writing at the next token
            while (await request.receive())["type"] != "http.disconnect":
                pass
            cancelled.set()
            queue.put_nowait(None)

        def work() -> None:
            try:
                for event in chat.stream(messages, max_new, temperature, cancelled=cancelled):
                    loop.call_soon_threadsafe(queue.put_nowait, ("part" if "part" in event else "done", event))
            except Exception as e:  # noqa: BLE001 - the page is told; the server goes on
                loop.call_soon_threadsafe(queue.put_nowait, ("error", {"error": f"{type(e).__name__}: {e}"}))
            loop.call_soon_threadsafe(queue.put_nowait, None)

        def release(_) -> None:  # once the thread has stopped: the slot is free
            state["running"] -= 1
            slots.release()

        loop.run_in_executor(None, work).add_done_callback(release)
        watcher = asyncio.create_task(watch())
        try:
            while (item := await queue.get()) is not None:
                yield sse(*item)
        finally:  # no await here: a cancelled request (the page went away) would be cancelled again at it
            cancelled.set()
            watcher.cancel()

    return Starlette(routes=[Route("/", page), Route("/api/status", status),
                             Route("/api/chat", chat_api, methods=["POST"])])
