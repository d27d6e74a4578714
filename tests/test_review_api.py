"""The review server's JSON API and its guards, against `gristmill review` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from gristmill.errors import ConfigError
from gristmill.flywheel.review_server import binding_token

from .conftest import ROOT
from .review_support import ReviewServer, make_run, records_of


@pytest.fixture(scope="module")
def run_dir(mock_server, tmp_path_factory):
    return make_run(mock_server.base_url, tmp_path_factory.mktemp("api"), seeds=4)


def call(url: str, body: Any = None, headers: dict[str, str] | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={**(headers or {}),
                                                              "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_every_answer_carries_the_csp_and_json_its_content_type(run_dir):
    with ReviewServer(run_dir) as server:
        for path, kind in [("", "text/html"), ("static/review.js", "text/javascript"),
                           ("static/review.css", "text/css"), ("api/next", "application/json"),
                           ("api/nothing", "application/json")]:
            status, headers, _ = call(server.base + path)
            assert headers["Content-Type"].startswith(kind), path
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
        status, _, body = call(server.base + "api/next?mode=everything")
        assert status == 400 and b"mode must be one of" in body


def test_labels_are_checked_and_stored(run_dir):
    record_id = records_of(run_dir)[0]["id"]
    with ReviewServer(run_dir, "--reviewer", "ana") as server:
        url = server.base + "api/label"
        good = {"record_id": record_id, "passed": False, "critique": " vague "}
        assert call(url, good, content_type="text/plain")[0] == 415  # no cross-site forms
        assert call(url, b"{not json")[0] == 400
        status, _, body = call(url, {**good, "passed": "no"})
        assert status == 400 and b"passed" in body
        status, _, body = call(url, {**good, "record_id": "nope"})
        assert status == 400 and b"record_id" in body
        status, _, body = call(url, good)
        assert status == 200 and json.loads(body)["label"]["passed"] is False
        shown = json.loads(call(f"{server.base}api/record/{record_id}")[2])["record"]
        assert [(lab["passed"], lab["critique"], lab["reviewer"]) for lab in shown["labels"]] \
            == [(False, "vague", "ana")]
        assert shown["seed"]["excerpt"].startswith("Seed passage") and shown["lineage"]
        nxt = json.loads(call(server.base + "api/next")[2])
        assert nxt["record"]["id"] != record_id and nxt["progress"]["labelled"] == 1


def test_a_foreign_host_header_is_refused_on_loopback(run_dir):
    with ReviewServer(run_dir) as server:
        status, _, body = call(server.base + "api/next", headers={"Host": "evil.example:80"})
        assert status == 421 and b"Host" in body


def test_with_a_token_requests_without_it_are_refused(run_dir):
    env = {**os.environ, "GRISTMILL_REVIEW_TOKEN": "s3cret-token"}
    with ReviewServer(run_dir, env=env) as server:
        assert server.url.endswith("?token=s3cret-token")
        for path in ("", "static/review.js", "api/next"):
            assert call(server.base + path)[0] == 403
        assert call(server.base + "api/next", headers={"X-Review-Token": "wrong"})[0] == 403
        assert call(server.base + "api/next", headers={"X-Review-Token": "s3cret-token"})[0] \
            == 200
        status, headers, _ = call(server.url)  # the printed URL sets a cookie for the page
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert call(server.base + "api/next", headers={"Cookie": cookie})[0] == 200


def test_a_non_loopback_address_needs_the_flag_and_gets_a_token(run_dir, monkeypatch):
    monkeypatch.delenv("GRISTMILL_REVIEW_TOKEN", raising=False)
    out = subprocess.run([sys.executable, "-m", "gristmill", "review", str(run_dir),
                          "--host", "0.0.0.0", "--port", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "--allow-remote" in out.stderr
    with pytest.raises(ConfigError, match="--allow-remote"):
        binding_token("192.168.1.10", allow_remote=False)
    token = binding_token("0.0.0.0", allow_remote=True)
    assert token and len(token) >= 24
    assert binding_token("127.0.0.1", allow_remote=False) is None
    assert binding_token("::1", allow_remote=False) is None


def test_not_a_run_directory(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gristmill", "review", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "no output.jsonl" in out.stderr
