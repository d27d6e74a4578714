"""The review page in headless Chromium (Playwright), against `gristmill review` as a real
process over a run made by a real pipeline against the mock server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from gristmill.flywheel.labels import LabelStore

from .review_support import PAYLOAD, ReviewServer, make_run, records_of


def shown_id(page: Page) -> str:
    return page.locator("#record").get_attribute("data-id") or ""


def wait_for_next(page: Page, previous: str) -> str:
    expect(page.locator("#record")).not_to_have_attribute("data-id", previous)
    return shown_id(page)


def labelled_counter(page: Page) -> str:
    return page.locator('[data-counter="labelled"] b').inner_text()


def test_label_with_mouse_and_keyboard_then_reload_and_restart(page: Page, mock_server,
                                                               tmp_path):
    run_dir = make_run(mock_server.base_url, tmp_path)
    total = len(records_of(run_dir))
    server = ReviewServer(run_dir)
    try:
        page.goto(server.url)
        expect(page.locator("#record")).to_be_visible()
        expect(page.locator("#progress")).to_contain_text(f"labelled 0 / {total}")
        first = shown_id(page)

        # the mouse: type a critique, click Fail
        page.locator("#critique").click()
        page.keyboard.type("the answer ignores the passage")
        page.locator("#fail").click()
        second = wait_for_next(page, first)
        expect(page.locator("#critique")).to_have_value("")

        # the keyboard: p passes; c focuses the critique box, Esc leaves it, f fails
        page.keyboard.press("p")
        third = wait_for_next(page, second)
        page.keyboard.press("c")
        page.keyboard.type("too short")
        page.keyboard.press("Escape")
        page.keyboard.press("f")
        fourth = wait_for_next(page, third)
        expect(page.locator('[data-counter="labelled"] b')).to_have_text(f"3 / {total}")
        expect(page.locator('[data-counter="this session"] b')).to_have_text("3")

        # b goes back to the last labelled record, which shows its label
        page.keyboard.press("b")
        expect(page.locator("#record")).to_have_attribute("data-id", third)
        expect(page.locator("#earlier")).to_contain_text("fail")
        expect(page.locator("#earlier")).to_contain_text("too short")

        page.reload()
        expect(page.locator('[data-counter="labelled"] b')).to_have_text(f"3 / {total}")
        assert shown_id(page) == fourth  # the same next record: sampling is seeded
    finally:
        assert server.stop() == 0

    with LabelStore(run_dir / "run.sqlite") as store:
        latest = store.latest()
    assert {k: (v.passed, v.critique) for k, v in latest.items()} == {
        first: (False, "the answer ignores the passage"), second: (True, ""),
        third: (False, "too short")}

    with ReviewServer(run_dir) as again:  # labels survive a restart of the server
        page.goto(again.url)
        expect(page.locator('[data-counter="labelled"] b')).to_have_text(f"3 / {total}")
        assert shown_id(page) == fourth


def test_a_script_payload_renders_as_text(page: Page, mock_server, tmp_path):
    run_dir = make_run(mock_server.base_url, tmp_path)
    target = next(r for r in records_of(run_dir) if PAYLOAD in r["messages"][0]["content"])
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    with ReviewServer(run_dir) as server:
        page.goto(f"{server.url}?record={target['id']}")
        expect(page.locator("#record")).to_have_attribute("data-id", target["id"])
        expect(page.locator("#instruction")).to_contain_text(PAYLOAD)
        expect(page.locator("#seed")).to_contain_text(PAYLOAD)
        expect(page.locator("#judge-verdict")).to_contain_text(PAYLOAD)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main script, main img").count() == 0
        assert page.locator("script").count() == 1  # the page's own


def test_filters_and_modes_drive_what_is_shown(page: Page, mock_server, tmp_path):
    run_dir = make_run(mock_server.base_url, tmp_path)
    failed = {r["id"] for r in records_of(run_dir) if not r["judge"]["passed"]}
    with ReviewServer(run_dir) as server:
        page.goto(server.url)
        expect(page.locator("#record")).to_be_visible()
        page.locator("#mode").select_option("judge_failed")
        expect(page.locator('[data-counter="left in this mode"] b')).to_have_text(
            str(len(failed)))
        expect(page.locator("#judge-verdict")).to_contain_text("failed")
        assert shown_id(page) in failed
        assert re.search(r"mode=judge_failed", page.url)  # a reload keeps the mode
        left = page.locator('[data-counter="left in this mode"] b')
        for done in range(1, len(failed) + 1):
            assert shown_id(page) in failed
            page.keyboard.press("f")
            expect(left).to_have_text(str(len(failed) - done))
        expect(page.locator("#empty")).to_contain_text("Nothing left")
        page.reload()
        expect(page.locator("#empty")).to_be_visible()
