"""Shared fixtures: the mock server as a real process on 127.0.0.1, configs, and loops.

Tests marked `both_loops` run once on asyncio's loop and once on uvloop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import uvloop

from gristmill.backends.mock.process import MockServerProcess

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.vllm_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_loops: run on asyncio's loop and on uvloop")
    config.addinivalue_line("markers", "vllm: runs a real vLLM (provisioned on first use); "
                            "part of the default suite, select with -m vllm")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if item.get_closest_marker("both_loops"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def mock_server_factory() -> Iterator[Callable[..., MockServerProcess]]:
    """Start mock servers with given options; all are stopped (and must exit) at teardown."""
    started: list[MockServerProcess] = []

    def start(*args: str) -> MockServerProcess:
        server = MockServerProcess(*args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.stop() == 0, "mock server did not exit cleanly"


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockServerProcess]:
    """A default (instant, faultless) mock server shared by a module's tests."""
    with MockServerProcess() as server:
        yield server


def pipeline_config(base_url: str, tmp_path: Path, *, seeds: int = 5, stages: int = 2,
                    **backend: Any) -> dict[str, Any]:
    """A small valid pipeline as a dict: `seeds` JSONL seeds, a question stage with a list
    output, then answer stages."""
    seed_file = tmp_path / "seeds.jsonl"
    with seed_file.open("w") as fh:
        for i in range(seeds):
            fh.write('{"text": "Seed passage number %d about rivers, mills and the people '
                     'who worked them."}\n' % i)
    stage_list: list[dict[str, Any]] = [{
        "name": "question", "prompt": "Ask two questions about: {{ seed }}",
        "output": {"type": "list", "min_items": 2, "max_items": 2},
        "sampling": {"max_tokens": 200}}]
    for i in range(1, stages):
        prev = stage_list[-1]["name"]
        stage_list.append({"name": f"answer{i}", "prompt": "Answer: {{ %s }}" % prev,
                           "sampling": {"max_tokens": 200}})
    return {"name": "test", "seeds": {"path": str(seed_file), "min_chars": 1},
            "backends": {"default": {"base_url": base_url, "model": "mock", **backend}},
            "stages": stage_list}



CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's browser: Debian's Chromium (`playwright install` cannot download
    here), headless, no GPU; no sandbox when the tests run as root (as CI does)."""
    import os

    path = next((p for p in CHROMIUM if Path(p).is_file()), None)
    if path is None:
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (the review page and "
                    "report tests drive it)")
    args = ["--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    return {**browser_type_launch_args, "executable_path": path, "args": args}


# Playwright's sync API keeps its event loop running on the main thread while it is started;
# pytest-playwright starts it once per session, which breaks every pytest-asyncio test that
# runs after a browser test. These overrides start it per module and stop it at the module's
# end; pytest-playwright's `context` and `page` (and its artifacts on failure) build on them.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Any) -> Any:
    return playwright.chromium


@pytest.fixture(scope="module")
def browser(browser_type: Any, browser_type_launch_args: dict[str, Any]) -> Iterator[Any]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    return {}
