"""The pages people use: `crawl2chat serve` (a chat page streaming replies as server-sent events) and `crawl2chat
label` (a page to rank sampled answers, the data a reward model learns from). Both are Starlette apps run by uvicorn
on 127.0.0.1 unless told otherwise; generation.py is what they share: a chat checkpoint that streams a reply, tools
live, and samples k distinct answers."""
