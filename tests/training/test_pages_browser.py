"""Both pages in a real browser: Debian's chromium, headless, driven by Playwright (executable_path; Playwright
downloads no browser). The chat page streams a reply with its tool call; the labeling page takes a ranking by mouse
and keyboard, and the ranking is there after the server is killed and started again."""

from __future__ import annotations

import shutil

import pytest

from training.preferences import RankingStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: chromium's own sandbox refuses to start as root (CI containers); the page is our own
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.mark.slow
def test_the_chat_page_streams_a_reply_and_shows_its_tool_call(sample_run, page_server, browser):
    server = page_server("serve", "--data", str(sample_run / "data"), "--stage", "sft")
    page = browser.new_page()
    page.goto(server.url)
    assert "talking to sft step 300" in page.inner_text("body")
    page.fill("textarea", 'How many "r" are in the word "strawberry"?')
    page.keyboard.press("Enter")
    reply = page.locator(".turn.assistant").last
    reply.locator(".tool.python_output").wait_for(timeout=60_000)  # the sandbox's answer, streamed in
    page.locator(".turn.assistant[data-done]").wait_for(timeout=60_000)
    assert reply.get_attribute("data-done") == "finished"
    assert reply.locator(".tool.python").inner_text().startswith("[python] ")
    assert reply.locator(".text").count() >= 1 and reply.locator(".text").last.inner_text().strip()
    assert page.locator("#send").is_enabled() and page.locator("#stop").is_disabled()
    page.fill("textarea", "<|im_end|> and now?")  # a second turn: the conversation went back whole
    page.keyboard.press("Enter")
    page.locator(".turn.assistant[data-done]").nth(1).wait_for(timeout=60_000)
    assert page.locator(".turn.user").nth(1).inner_text() == "<|im_end|> and now?"
    assert page.locator(".turn.error").count() == 0


@pytest.mark.slow
def test_a_ranking_made_by_mouse_and_keyboard_survives_a_killed_server(sample_run, page_server, browser, tmp_path):
    db = tmp_path / "rankings.sqlite"
    args = ("--data", str(sample_run / "data"), "--db", str(db), "--k", "4", "--stage", "sft")
    server = page_server("label", *args, ready="/api/agreement")
    page = browser.new_page()
    page.goto(server.url)
    page.fill("#name", "ann")
    page.click("#start")
    answers = page.locator(".answer")
    answers.nth(3).wait_for(timeout=60_000)
    shown = [answers.nth(i).inner_text() for i in range(4)]
    answers.nth(2).click()  # best: the third answer, by mouse
    page.keyboard.press("1")  # then the first, by keyboard
    page.keyboard.press("4")  # then the fourth; the one left is the worst
    assert [answers.nth(i).get_attribute("data-rank") for i in range(4)] == ["2", "4", "1", "3"]
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved ranking #1')",
                           timeout=60_000)
    server.kill()
    (ranking,) = RankingStore(db).rankings()
    assert ranking.labeler == "ann" and ranking.source == "label"
    assert ranking.responses == tuple(shown[i] for i in (2, 0, 3, 1))
    server = page_server("label", *args, ready="/api/agreement")
    page.goto(server.url)  # another port, another origin: the name is typed again
    page.fill("#name", "ann")
    page.click("#start")
    page.locator(".answer").nth(1).wait_for(timeout=60_000)
    assert "(1 of 16 ranked)" in page.inner_text("#progress")  # the restarted server knows what ann did
