"""`crawl2chat label`: a page where people rank answers the chat model sampled, best first; an ASGI app (Starlette)
run by uvicorn on 127.0.0.1.

    GET  /                       the page: a name, then one prompt at a time with k answers to put in order
    GET  /api/task?labeler=NAME  the labeler's next prompt and its answers ({"done": true} when none is left)
    POST /api/rankings           {"task": i, "labeler": NAME, "order": [answer indexes, best first]}
    GET  /api/agreement          Kendall's tau between labelers on the prompts they both ranked

Task i is prompt i with k answers sampled from seed i, the same for every labeler, so their rankings of a prompt
compare. A ranking is committed to the store (SQLite in WAL mode, synchronous=FULL, or Postgres:
training/preferences.py) before the API answers, and the page says "saved" only then: a server killed the next moment has it. The next task
is the first prompt the labeler has not ranked, read from the store, so a restarted server picks up where each
labeler was. preference_rankings reads the same file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from training.preferences import PostgresRankingStore, Ranking, RankingStore, agreement, now
from training.web.generation import ChatModel

PAGE = Path(__file__).with_name("label.html")
PROMPTS = (  # answers no program can check: what people's rankings are for
    "Tell me a joke about computers.", "Write a short poem about the sea.", "Who are you?",
    "Summarize what a package manager does.", "Give me one tip for writing clear documentation.",
    "What is 25 + 17?", "Describe a cat in one sentence.", "Why is the sky blue?",
    "Say something kind to a friend who failed an exam.", "What is Python used for?",
    "Write a haiku about winter.", "Explain what a web crawler is.", "What should I name my dog?",
    "How do I make a cup of tea?", "Tell me a fun fact.", "What is the capital of Zorbania?",
)


def create_app(chat: ChatModel, store: RankingStore | PostgresRankingStore, prompts: tuple[str, ...] = PROMPTS, k: int = 4,
               max_new_tokens: int = 64) -> Starlette:
    if k < 2:
        raise ValueError(f"k must be >= 2 answers to rank, got {k}")
    if not prompts:
        raise ValueError("the labeling page needs at least one prompt")
    answers: dict[int, list[str]] = {}  # task -> its answers, sampled once

    async def task_answers(task: int) -> list[str]:
        if task not in answers:
            answers[task] = await asyncio.to_thread(chat.answers, prompts[task], k, max_new_tokens, task)
        return answers[task]

    def ranked_by(labeler: str) -> set[str]:
        return {r.prompt for r in store.rankings() if r.labeler == labeler}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text().replace("{{MODEL}}", chat.name))

    async def task(request: Request) -> JSONResponse:
        labeler = request.query_params.get("labeler", "").strip()
        if not labeler:
            return JSONResponse({"error": "say who is ranking: ?labeler=NAME"}, status_code=400)
        done = ranked_by(labeler)
        for i, prompt in enumerate(prompts):
            if prompt in done:
                continue
            found = await task_answers(i)
            if len(found) >= 2:  # a prompt the model answers the same way every time has nothing to rank
                return JSONResponse({"task": i, "prompt": prompt, "answers": found, "ranked": len(done),
                                     "total": len(prompts)})
        return JSONResponse({"done": True, "ranked": len(done), "total": len(prompts)})

    async def rank(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            i, labeler, order = int(body["task"]), str(body["labeler"]).strip(), list(body["order"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send {\"task\": i, \"labeler\": NAME, \"order\": [indexes]}"},
                                status_code=400)
        if not 0 <= i < len(prompts) or i not in answers:
            return JSONResponse({"error": f"task {i} was never shown"}, status_code=400)
        found = answers[i]
        if sorted(order) != list(range(len(found))):
            return JSONResponse({"error": f"order must put all {len(found)} answers in order, each once"},
                                status_code=400)
        try:
            ranking = Ranking(prompts[i], tuple(found[j] for j in order), labeler, now())
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        saved = await asyncio.to_thread(store.add, ranking)  # on disk before the page hears "saved"
        return JSONResponse({"saved": saved, "agreement": agreement(store.rankings())})

    async def agreement_api(request: Request) -> JSONResponse:
        rankings = store.rankings()
        return JSONResponse({**agreement(rankings), "rankings": len(rankings),
                             "labelers": sorted({r.labeler for r in rankings})})

    return Starlette(routes=[Route("/", page), Route("/api/task", task),
                             Route("/api/rankings", rank, methods=["POST"]),
                             Route("/api/agreement", agreement_api)])
