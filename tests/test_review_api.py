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
import yaml

from gristmill.errors import ConfigError
from gristmill.flywheel.review_server import binding_token

from .conftest import ROOT, pipeline_config
from .conversation_records import dialogue, plain
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


def test_criteria_are_labelled_one_by_one_and_a_relabel_keeps_the_history(run_dir):
    record_id = records_of(run_dir)[1]["id"]
    with ReviewServer(run_dir) as server:
        url = server.base + "api/label"
        before = json.loads(call(server.base + "api/next")[2])["progress"]["labelled"]
        status, _, body = call(url, {"record_id": record_id, "criterion": "faithful",
                                     "passed": False, "critique": "invents a mill"})
        assert status == 200
        assert json.loads(body)["label"] | {"labeled_at": 0} == {
            "record_id": record_id, "criterion": "faithful", "passed": False,
            "critique": "invents a mill", "reviewer": os.environ.get("USER", ""),
            "labeled_at": 0}
        assert call(url, {"record_id": record_id, "criterion": "faithful", "passed": True})[0] \
            == 200
        assert call(url, {"record_id": record_id, "criterion": None, "passed": False})[0] == 200
        shown = json.loads(call(f"{server.base}api/record/{record_id}")[2])["record"]
        faithful, complete = shown["criteria"]
        assert (faithful["name"], complete["name"]) == ("faithful", "complete")
        assert faithful["judge"]["passed"] is True  # the verdict the judge gave (index 1)
        assert faithful["label"]["passed"] is True and faithful["label"]["critique"] == ""
        assert complete["label"] is None
        assert [(lab["criterion"], lab["passed"]) for lab in shown["labels"]] == [
            ("faithful", False), ("faithful", True), (None, False)]
        # only the overall label counts a record as labelled
        progress = json.loads(call(server.base + "api/next")[2])["progress"]
        assert progress["labelled"] == before + 1


def test_a_bad_criterion_label_gets_a_4xx_with_the_reason(run_dir):
    record_id = records_of(run_dir)[2]["id"]
    with ReviewServer(run_dir) as server:
        url = server.base + "api/label"
        good = {"record_id": record_id, "criterion": "complete", "passed": True}
        for bad, reason in [({"criterion": "tone"}, b"not a criterion of this record"),
                            ({"criterion": 3}, b"criterion"),
                            ({"criterion": ""}, b"criterion"),
                            ({"passed": None}, b"passed"),
                            ({"critique": "x" * 20_001}, b"critique")]:
            status, _, body = call(url, {**good, **bad})
            assert status == 400 and reason in body, (bad, body)
        status, _, body = call(url, [good])
        assert status == 400 and b"JSON object" in body
        status, _, body = call(url, {**good, "criterion": "tone"})
        assert b"faithful, complete" in body  # the criteria it may name
        shown = json.loads(call(f"{server.base}api/record/{record_id}")[2])["record"]
        assert shown["labels"] == []  # nothing was stored


def criteria_shown(server: ReviewServer, record_id: str) -> list[tuple[str, Any, Any]]:
    shown = json.loads(call(f"{server.base}api/record/{record_id}")[2])["record"]
    return [(c["name"], c["judge"], c["label"]) for c in shown["criteria"]]


def test_an_unjudged_record_is_labelled_on_the_run_judges_criteria(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    config["judge"] = {"criteria": [{"name": "grounded", "question": "Is it grounded?"}]}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "output.jsonl").write_text("".join(json.dumps(r) + "\n"
                                              for r in (plain("plain-1"), dialogue("talk-1"))))
    with ReviewServer(run) as server:
        for record_id in ("plain-1", "talk-1"):
            assert criteria_shown(server, record_id) == [("grounded", None, None)]
        status, _, body = call(server.base + "api/label", {"record_id": "plain-1",
                                                           "criterion": "coherent",
                                                           "passed": False})
        assert status == 400 and b"its criteria: grounded;" in body

    # an aligned judge takes the config's place, with its criteria per skill
    (run / "judge").mkdir()
    (run / "judge" / "judge-v1.yaml").write_text(yaml.safe_dump({
        "version": "judge-v1", "criteria": [{"name": "grounded", "question": "Grounded?"}],
        "skills": {"multi_turn": [{"name": "coherent", "question": "One thread?"}]}}))
    with ReviewServer(run) as server:
        assert criteria_shown(server, "plain-1") == [("grounded", None, None)]
        assert criteria_shown(server, "talk-1") == [("grounded", None, None),
                                                    ("coherent", None, None)]
        assert call(server.base + "api/label", {"record_id": "talk-1", "criterion": "coherent",
                                                "passed": False})[0] == 200
        assert criteria_shown(server, "talk-1")[1][2]["passed"] is False


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
