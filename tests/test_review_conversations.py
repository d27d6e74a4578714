"""The review page in headless Chromium showing a multi-turn dialogue and a tool-call record
whole (every turn and role, tool calls with their arguments, tool results, the tool list),
every text of them set as text, never as HTML; a plain record keeps its instruction/answer view."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Page, expect

from .conversation_records import HTML, dialogue, plain, tool_use
from .review_support import ReviewServer


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory holding only output.jsonl: HTML in a tool's description, a tool call's
    arguments, a tool result and a dialogue's answer."""
    tools = tool_use("tools-1")
    tools["tools"][0]["function"]["description"] = f"Find a table. {HTML}"
    calling = tools["messages"][2]["tool_calls"][0]["function"]
    calling["arguments"] = json.dumps({"party": 2, "note": HTML})
    tools["messages"][3]["content"] = json.dumps({"name": "Luigi's", "html": HTML})
    run = tmp_path / "run"
    run.mkdir()
    (run / "output.jsonl").write_bytes(b"".join(
        orjson.dumps(r) + b"\n" for r in (plain("plain-1"), dialogue("dialogue-1"), tools)))
    return run


def open_record(page: Page, server: ReviewServer, record_id: str) -> None:
    page.goto(f"{server.url}?record={record_id}")
    expect(page.locator("#record")).to_have_attribute("data-id", record_id)


def no_html_ran(page: Page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script").count() == 0


def test_a_dialogue_shows_every_turn_with_its_role(page: Page, run_dir: Path):
    record = dialogue("dialogue-1")
    with ReviewServer(run_dir) as server:
        open_record(page, server, "dialogue-1")
        turns = page.locator("#conversation > li")
        expect(turns).to_have_count(len(record["messages"]))
        assert [turns.nth(i).get_attribute("data-role") for i in range(turns.count())] == \
            [m["role"] for m in record["messages"]]
        for i, message in enumerate(record["messages"]):
            expect(turns.nth(i).locator(".text")).to_have_text(message["content"])
        expect(page.locator("#single")).to_be_hidden()
        expect(page.locator("#tools-box")).to_be_hidden()
        expect(turns.nth(4)).to_contain_text(HTML)  # the payload, as text
        no_html_ran(page)


def test_a_tool_call_record_shows_calls_results_and_tools(page: Page, run_dir: Path):
    with ReviewServer(run_dir) as server:
        open_record(page, server, "tools-1")
        turns = page.locator("#conversation > li")
        expect(turns).to_have_count(10)
        calling = turns.nth(2)
        assert calling.get_attribute("data-role") == "assistant"
        expect(calling.locator(".call-name")).to_have_text("calls find_restaurant (call_1)")
        expect(calling.locator(".arguments")).to_contain_text('"party": 2')
        expect(calling.locator(".arguments")).to_contain_text(HTML)
        expect(calling.locator(":scope > .text")).to_have_count(0)  # null content: no text box
        result = turns.nth(3)
        expect(result.locator(".role")).to_have_text("result of find_restaurant (call_1)")
        expect(result.locator(".text")).to_contain_text("Luigi's")
        parallel = turns.nth(6).locator(".call-name")
        expect(parallel).to_have_text(["calls book_taxi (call_2)", "calls book_taxi (call_3)"])
        expect(turns.nth(8).locator(".role")).to_have_text("result of book_taxi (call_3)")
        expect(turns.nth(9).locator(".text")).to_have_text(
            "Taxis T-17 (7:40pm) and T-42 (10:30pm) are booked.")
        page.locator("#tools-box summary").click()
        tools = page.locator("#tools .tool")
        expect(tools).to_have_count(2)
        expect(tools.nth(0)).to_contain_text("find_restaurant")
        expect(tools.nth(0)).to_contain_text(f"Find a table. {HTML}")
        expect(tools.nth(0).locator(".arguments")).to_contain_text('"required": [')
        expect(tools.nth(1)).to_contain_text("book_taxi")
        no_html_ran(page)


def test_a_plain_record_keeps_the_instruction_and_answer_view(page: Page, run_dir: Path):
    with ReviewServer(run_dir) as server:
        open_record(page, server, "plain-1")
        expect(page.locator("#instruction")).to_have_text("What is a mill race?")
        expect(page.locator("#answer")).to_have_text("The channel feeding a mill.")
        expect(page.locator("#conversation-box")).to_be_hidden()
        open_record(page, server, "dialogue-1")  # from a conversation back to a plain record
        page.keyboard.press("b")  # nothing labelled yet: b does nothing
        open_record(page, server, "plain-1")
        expect(page.locator("#single")).to_be_visible()
        expect(page.locator("#conversation-box")).to_be_hidden()
