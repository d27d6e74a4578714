"""Shared fixtures: the mock server as a real process on 127.0.0.1, configs, and loops.

Which loop a test runs on: an engine-core test (`engine_core` marker; it talks to the
in-process scripted backend, tests/scripted.py) runs on the virtual-clock loop and on uvloop,
or on the virtual-clock loop only when it asserts virtual times (`virtual_clock` marker), or
on asyncio's loop and uvloop when it waits on threads, which virtual time cannot
(`real_clock`: a whole run, whose store writes from a thread); a
test against a subprocess server (the `mock_server` fixtures, or the `integration` marker)
runs on uvloop, as the CLI does; any other async test on asyncio's loop. Every test loop runs
in asyncio's debug mode (`asyncio_debug` in pyproject, set per loop: the mock servers' own
processes do not inherit it); slow callbacks it reports are listed in the summary."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
import uvloop

from gristmill.backends.mock.process import MockServerProcess
from tests.virtual_clock import new_virtual_loop

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.vllm_fixtures", "tests.batch_support", "tests.cluster_support"]
SUBPROCESS_FIXTURES = {"mock_server", "mock_server_factory"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine_core: in-process, on the virtual clock and uvloop")
    config.addinivalue_line("markers", "virtual_clock: asserts virtual times: that loop only")
    config.addinivalue_line("markers", "integration: talks to subprocess servers: uvloop")
    config.addinivalue_line("markers", "real_clock: in-process but waits on threads (a run's "
                            "store): asyncio's loop and uvloop, on the real clock")
    config.addinivalue_line("markers", "vllm: runs a real vLLM (provisioned on first use); "
                            "part of the default suite, select with -m vllm")
    config.stash[SLOW_CALLBACKS] = []
    handler = SlowCallbacks(config.stash[SLOW_CALLBACKS])
    logging.getLogger("asyncio").addHandler(handler)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if item.get_closest_marker("virtual_clock"):
        return {"virtual": new_virtual_loop}
    # before `engine_core`: a module of engine-core tests may hold one integration test
    if item.get_closest_marker("integration") or SUBPROCESS_FIXTURES & set(
            getattr(item, "fixturenames", ())):
        return {"uvloop": uvloop.new_event_loop}
    if item.get_closest_marker("real_clock"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    if item.get_closest_marker("engine_core"):
        return {"virtual": new_virtual_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


# -- slow callbacks: reported, not failed ------------------------------------------------
SLOW_CALLBACKS = pytest.StashKey[list[tuple[str, str]]]()
_current_test = [""]


class SlowCallbacks(logging.Handler):
    """Keeps asyncio debug mode's "Executing <callback> took N seconds" warnings."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.found.append((_current_test[0], message))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current_test[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current_test[0] = ""


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(SLOW_CALLBACKS, [])
    if not found:
        return
    terminalreporter.section(f"slow callbacks (asyncio debug mode): {len(found)}")
    for nodeid, message in found:
        terminalreporter.write_line(f"{nodeid or '(between tests)'}: {message[:300]}")


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


def processes_running(*parts: str) -> list[psutil.Process]:
    """Live processes whose command line holds every one of `parts` (what a test that
    starts servers or workers checks is gone afterwards)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and all(p in cmdline for p in parts):
            found.append(proc)
    return found
