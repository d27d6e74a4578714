"""Per-criterion labels on the review page in headless Chromium (Playwright), against
`gristmill review` as a real process: marking criteria with the mouse and the keyboard, a
multi-turn record, and model text (in answers, critiques, even criterion names) kept as text."""

from __future__ import annotations

import json
import os
from pathlib import Path

from playwright.sync_api import Page, expect

from gristmill.flywheel.labels import LabelStore

from .conversation_records import HTML, dialogue
from .review_support import ReviewServer, make_run, records_of
from .test_review_page import shown_id, wait_for_next


def mark(page: Page, criterion: str):
    return page.locator(f'#marks .mark[data-criterion="{criterion}"]')


def labels_of(run_dir: Path, record_id: str) -> list[tuple[str, bool, str]]:
    with LabelStore(run_dir / "run.sqlite") as store:
        return [(lab.criterion, lab.passed, lab.critique) for lab in store.history(record_id)]


def test_criteria_are_marked_with_the_mouse_and_the_keyboard(page: Page, mock_server, tmp_path):
    run_dir = make_run(mock_server.base_url, tmp_path)
    verdicts = {r["id"]: r["judge"]["criteria"] for r in records_of(run_dir)}
    with ReviewServer(run_dir) as server:
        page.goto(server.url)
        expect(page.locator("#record")).to_be_visible()
        first = shown_id(page)
        expect(page.locator("#marks .mark")).to_have_count(2)
        for name, verdict in verdicts[first].items():
            expect(mark(page, name).locator(".judge")).to_have_text(
                f"judge {'✓' if verdict['passed'] else '✗'}")

        # the mouse: each criterion's buttons, a critique, then Enter as the criteria say
        mark(page, "complete").locator("button.pass").click()
        expect(mark(page, "complete")).to_have_attribute("data-label", "pass")
        expect(page.locator("#implied")).to_contain_text("Mark every criterion")
        mark(page, "faithful").locator("button.fail").click()
        expect(mark(page, "faithful")).to_have_attribute("data-label", "fail")
        expect(page.locator("#implied")).to_have_attribute("data-verdict", "fail")
        page.locator("#critique").fill("makes up a mill")
        page.locator("#critique").blur()
        page.keyboard.press("Enter")
        second = wait_for_next(page, first)
        expect(page.locator("#marks .mark[data-label]:not([data-label=''])")).to_have_count(0)

        # the keyboard: 1 selects faithful; p marks it and selects complete; f marks that
        page.keyboard.press("1")
        expect(mark(page, "faithful")).to_have_class("mark selected")
        page.keyboard.press("p")
        expect(mark(page, "faithful")).to_have_attribute("data-label", "pass")
        expect(mark(page, "complete")).to_have_class("mark selected")
        page.keyboard.press("f")
        expect(mark(page, "complete")).to_have_attribute("data-label", "fail")
        expect(page.locator("#marks .selected")).to_have_count(0)
        page.keyboard.press("1")  # a second look: a relabel is a new label
        page.keyboard.press("f")
        expect(mark(page, "faithful")).to_have_attribute("data-label", "fail")
        page.keyboard.press("Escape")  # nothing selected: Enter needs every mark, P does not
        page.keyboard.press("Shift+P")  # the overall verdict may differ from the criteria
        third = wait_for_next(page, second)

        # a digit twice selects nothing; p then labels the whole record; Enter without marks
        # labels nothing
        page.keyboard.press("2")
        page.keyboard.press("2")
        expect(page.locator("#marks .selected")).to_have_count(0)
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("Mark every criterion first")
        assert shown_id(page) == third
        page.keyboard.press("p")
        fourth = wait_for_next(page, third)

        # k goes back, with the marks in force; j moves on without a label
        page.keyboard.press("k")
        expect(page.locator("#record")).to_have_attribute("data-id", third)
        page.keyboard.press("k")
        expect(page.locator("#record")).to_have_attribute("data-id", second)
        expect(mark(page, "faithful")).to_have_attribute("data-label", "fail")
        expect(mark(page, "complete")).to_have_attribute("data-label", "fail")
        expect(page.locator("#earlier")).to_contain_text("faithful pass")
        page.keyboard.press("j")
        assert wait_for_next(page, second) not in (first, second, third)
        expect(page.locator('[data-counter="labelled"] b')).to_contain_text("3 /")

    assert labels_of(run_dir, first) == [("complete", True, ""), ("faithful", False, ""),
                                         ("", False, "makes up a mill")]
    assert labels_of(run_dir, second) == [("faithful", True, ""), ("complete", False, ""),
                                          ("faithful", False, ""), ("", True, "")]
    assert labels_of(run_dir, third) == [("", True, "")]
    assert labels_of(run_dir, fourth) == []


def test_a_multi_turn_record_is_marked_and_its_texts_stay_text(page: Page, tmp_path):
    """Model text in an answer, a judge critique, a criterion's name and the reviewer's own
    critique never becomes HTML; the page works with a token too (its script is a module)."""
    record = dialogue("talk-1")
    record["judge"] = {"passed": False, "version": "judge-test", "criteria": {
        "coherent": {"passed": True, "critique": f"keeps the thread {HTML}"},
        HTML: {"passed": False, "critique": HTML}}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "output.jsonl").write_text(json.dumps(record) + "\n")
    env = {**os.environ, "GRISTMILL_REVIEW_TOKEN": "marks-token"}
    with ReviewServer(run, env=env) as server:
        page.goto(f"{server.url}&record=talk-1")
        expect(page.locator("#record")).to_have_attribute("data-id", "talk-1")
        expect(page.locator("#conversation > li")).to_have_count(len(record["messages"]))
        expect(page.locator("#conversation > li").nth(4)).to_contain_text(HTML)
        expect(page.locator("#marks .mark .name")).to_have_text(["coherent", HTML])
        assert mark(page, "coherent").locator(".judge").get_attribute("title") == \
            f"keeps the thread {HTML}"
        page.keyboard.press("2")
        page.keyboard.press("f")
        expect(page.locator("#marks .mark").nth(1)).to_have_attribute("data-label", "fail")
        page.keyboard.press("1")
        page.keyboard.press("p")
        expect(mark(page, "coherent")).to_have_attribute("data-label", "pass")
        page.keyboard.press("c")
        page.keyboard.type(f"the last turn is fine {HTML}")
        page.keyboard.press("Escape")
        page.keyboard.press("Enter")  # the criteria say fail
        expect(page.locator("#status")).to_contain_text("Labelled talk-1 fail")
        page.goto(f"{server.url}&record=talk-1")
        expect(page.locator("#earlier li")).to_have_count(3)
        expect(page.locator("#earlier")).to_contain_text(f"fail — the last turn is fine {HTML}")
        expect(page.locator("#judge-verdict")).to_contain_text(HTML)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img, aside img, main script, aside script").count() == 0
    assert labels_of(run, "talk-1") == [(HTML, False, ""), ("coherent", True, ""),
                                        ("", False, f"the last turn is fine {HTML}")]
