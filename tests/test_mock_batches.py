"""The mock server's Files and Batch API, driven through the openai SDK (and plain HTTP where
the SDK hides what is checked) against the spawned process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from gristmill.backends.mock.process import MockServerProcess

pytestmark = pytest.mark.timeout(60)

CHAT, TEXT = "/v1/chat/completions", "/v1/completions"
DEADLINE_S = 20.0


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON) of a plain HTTP request: what the SDK does not show."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat_body(i: int, model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"Tell me about river {i}."}],
            **extra}


def line(custom_id: str, body: dict[str, Any], url: str = CHAT) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def chat_lines(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [line(f"req-{i}", chat_body(i, **extra)) for i in range(n)]


def client_of(server: MockServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def upload(client: openai.OpenAI, folder: Path, lines: list[Any], name: str = "in.jsonl") -> str:
    path = folder / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with open(path, "rb") as f:
        return client.files.create(file=f, purpose="batch").id


def submit(client: openai.OpenAI, folder: Path, lines: list[Any], endpoint: str = CHAT,
           **kw: Any) -> str:
    file_id = upload(client, folder, lines)
    return client.batches.create(input_file_id=file_id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h", **kw).id


def wait_status(client: openai.OpenAI, batch_id: str, *statuses: str) -> Any:
    """Poll until the batch reaches one of `statuses` (or fail at the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while (batch := client.batches.retrieve(batch_id)).status not in statuses:
        assert time.monotonic() < deadline, f"{batch_id} stuck in {batch.status}"
        time.sleep(0.01)
    return batch


def jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def split_ids(client: openai.OpenAI, batch: Any) -> tuple[list[dict], list[dict]]:
    return jsonl(client, batch.output_file_id), jsonl(client, batch.error_file_id)


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mock-files")


@pytest.fixture(scope="module")
def server(files_dir: Path):
    with MockServerProcess("--files-dir", str(files_dir), "--batch-max-requests", "5",
                           "--batch-max-bytes", "4000") as s:
        yield s


@pytest.fixture
def client(server: MockServerProcess) -> openai.OpenAI:
    return client_of(server)


# -- the whole cycle ----------------------------------------------------------------------
def test_sdk_full_cycle(client, server, files_dir, tmp_path):
    file_id = upload(client, tmp_path, chat_lines(4))
    info = client.files.retrieve(file_id)
    assert (info.object, info.purpose, info.status, info.filename) == (
        "file", "batch", "processed", "in.jsonl")
    assert info.bytes == (tmp_path / "in.jsonl").stat().st_size
    assert file_id in [f.id for f in client.files.list(purpose="batch")]
    created = client.batches.create(input_file_id=file_id, endpoint=CHAT,
                                    completion_window="24h", metadata={"run": "cycle"})
    assert created.status == "validating" and created.id.startswith("batch_")
    batch = wait_status(client, created.id, "completed", "failed")
    assert batch.status == "completed", batch.errors
    assert batch.metadata == {"run": "cycle"} and batch.input_file_id == file_id
    assert batch.request_counts.total == batch.request_counts.completed == 4
    assert batch.request_counts.failed == 0 and batch.error_file_id is None
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) >= batch.created_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    out = jsonl(client, batch.output_file_id)
    assert sorted(x["custom_id"] for x in out) == [f"req-{i}" for i in range(4)]
    for x in out:
        assert x["id"].startswith("batch_req_") and x["error"] is None
        assert x["response"]["status_code"] == 200
        assert x["response"]["body"]["object"] == "chat.completion"
    usages = [x["response"]["body"]["usage"] for x in out]
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in usages)
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in usages)
    assert batch.usage.total_tokens == sum(u["total_tokens"] for u in usages)
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert batch.output_file_id in [f.id for f in client.files.list(purpose="batch_output")]
    assert batch.id in [b.id for b in client.batches.list()]
    stats = server.stats()["batches"]
    assert stats["created"] >= 1 and stats["completed"] >= 1 and stats["files"] >= 2
    assert client.files.delete(file_id).deleted
    assert client.batches.retrieve(batch.id).status == "completed"  # the batch stays


def test_batch_bodies_equal_online_bodies(client, server, tmp_path):
    """The same bodies, in a batch and online: the same choices and usage (the judge's
    verdicts, schema JSON and max_tokens cuts included)."""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    judge = {"type": "json_schema", "json_schema": {"name": "judge_verdict", "schema": {
        "type": "object", "properties": {"criteria": {"type": "object", "properties": {
            "overall": {"type": "object"}}}}}}}
    bodies = [chat_body(0), chat_body(1, max_tokens=5), chat_body(2, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}),
        chat_body(3, response_format=judge)]
    texts = [{"model": "m", "prompt": "Once upon a time"},
             {"model": "m", "prompt": ["a", "b"], "max_tokens": 7}]
    for endpoint, group in ((CHAT, bodies), (TEXT, texts)):
        batch_id = submit(client, tmp_path, [line(f"b{i}", b, endpoint)
                                             for i, b in enumerate(group)], endpoint)
        batch = wait_status(client, batch_id, "completed", "failed")
        assert batch.status == "completed", batch.errors
        got = {x["custom_id"]: x["response"]["body"] for x in jsonl(client, batch.output_file_id)}
        for i, body in enumerate(group):
            status, online = http("POST", server.url + endpoint, body)
            assert status == 200
            assert got[f"b{i}"]["choices"] == online["choices"]
            assert got[f"b{i}"]["usage"] == online["usage"]
            assert got[f"b{i}"]["object"] == online["object"]


# -- validation ---------------------------------------------------------------------------
LONG = "word " * 500  # a request line over 2 KB


@pytest.mark.parametrize("lines, endpoint, code, line_no", [
    ([line("a", chat_body(0)), line("b", chat_body(1)), line("a", chat_body(2))], CHAT,
     "duplicate_custom_id", 3),
    ([line("a", chat_body(0)), line("b", chat_body(1, model="other"))], CHAT,
     "mismatched_model", 2),
    (chat_lines(6), CHAT, "too_many_requests", 6),
    ([line("a", chat_body(0)), "{not json", line("c", chat_body(2))], CHAT,
     "invalid_json_line", 2),
    ([line("a", chat_body(0)), line("b", chat_body(1), url=TEXT)], CHAT, "invalid_url", 2),
    ([line("a", chat_body(0)), {"custom_id": "b", "method": "GET", "url": CHAT,
                                "body": chat_body(1)}], CHAT, "invalid_method", 2),
    ([line(f"l{i}", chat_body(0, stop=LONG)) for i in range(2)], CHAT, "file_too_large", None),
], ids=["duplicate", "two-models", "too-many-requests", "bad-json", "wrong-url",
        "wrong-method", "too-many-bytes"])
def test_validation_failures(client, tmp_path, lines, endpoint, code, line_no):
    batch = wait_status(client, submit(client, tmp_path, lines, endpoint), "failed",
                        "completed")
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.in_progress_at is None and batch.output_file_id is None
    assert batch.errors is not None and batch.errors.object == "list"
    first = batch.errors.data[0]
    assert (first.code, first.line) == (code, line_no), batch.errors


def test_create_refuses_a_missing_file_or_a_bad_endpoint(client, tmp_path):
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    file_id = upload(client, tmp_path, chat_lines(1))
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                              completion_window="24h")


# -- files on disk ------------------------------------------------------------------------
def test_files_live_on_disk_and_delete_removes_them(client, files_dir, tmp_path):
    file_id = upload(client, tmp_path, chat_lines(2))
    on_disk = files_dir / file_id
    assert on_disk.read_bytes() == (tmp_path / "in.jsonl").read_bytes()
    # content is read from disk, not from a copy in the server's memory
    on_disk.write_bytes(b"changed on disk\n")
    assert client.files.content(file_id).content == b"changed on disk\n"
    deleted = client.files.delete(file_id)
    assert (deleted.id, deleted.deleted) == (file_id, True)
    assert not on_disk.exists()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)
    assert file_id not in [f.id for f in client.files.list()]


def test_batch_outputs_are_files_on_disk(client, files_dir, tmp_path):
    batch = wait_status(client, submit(client, tmp_path, chat_lines(3)), "completed")
    assert (files_dir / batch.output_file_id).read_bytes() == client.files.content(
        batch.output_file_id).content


def test_the_default_files_dir_is_a_temp_dir_removed_on_exit():
    with MockServerProcess() as s:
        folder = Path(s.stats()["batches"]["files_dir"])
        assert folder.is_dir()
    assert not folder.exists()


# -- listing ------------------------------------------------------------------------------
def test_list_batches_newest_first_with_after(client, tmp_path):
    ids = [submit(client, tmp_path, chat_lines(1)) for _ in range(3)]
    for batch_id in ids:
        wait_status(client, batch_id, "completed")
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    _, raw = http("GET", f"{client.base_url}batches?limit=2")
    assert (raw["first_id"], raw["last_id"]) == (ids[2], ids[1])
    after = client.batches.list(after=page.data[-1].id, limit=2)
    assert after.data[0].id == ids[0]
    listed = [b.id for b in client.batches.list(limit=2)]  # the SDK follows `after`
    assert listed[:3] == ids[::-1] and len(listed) == len(set(listed))


# -- answering: failures, expiry, cancel, pace --------------------------------------------
def test_fail_rate_splits_every_id_once_in_shuffled_order(tmp_path):
    with MockServerProcess("--batch-fail-rate", "0.3", "--seed", "7") as s:
        client = client_of(s)
        lines = chat_lines(40)
        batch = wait_status(client, submit(client, tmp_path, lines), "completed")
        out, err = split_ids(client, batch)
    ids = [x["custom_id"] for x in out + err]
    assert sorted(ids) == sorted(x["custom_id"] for x in lines)  # each exactly once
    assert err and out
    assert [x["custom_id"] for x in out] != [x["custom_id"] for x in lines
                                             if x["custom_id"] in {y["custom_id"] for y in out}]
    assert batch.request_counts.completed == len(out)
    assert batch.request_counts.failed == len(err)
    assert batch.request_counts.total == 40
    for x in err:
        assert x["error"]["code"] == "internal_error"
        assert x["response"]["status_code"] == 500
        assert x["response"]["body"]["error"]["code"] == "internal_error"


def test_expiry_part_way(tmp_path):
    with MockServerProcess("--batch-expire-after", "4") as s:
        client = client_of(s)
        batch = wait_status(client, submit(client, tmp_path, chat_lines(10)), "expired",
                            "completed")
        out, err = split_ids(client, batch)
        assert s.stats()["batches"]["expired"] == 1
    assert batch.status == "expired" and batch.expired_at is not None
    assert len(out) == batch.request_counts.completed == 4
    assert len(err) == batch.request_counts.failed == 6
    assert all(x["error"]["code"] == "batch_expired" and x["response"] is None for x in err)
    assert sorted(x["custom_id"] for x in out + err) == sorted(f"req-{i}" for i in range(10))


def test_slow_batch_shows_partial_counts_then_finalizes(tmp_path):
    with MockServerProcess("--batch-ms-per-request", "60", "--batch-finalizing-ms",
                           "1500") as s:
        client = client_of(s)
        batch_id = submit(client, tmp_path, chat_lines(10))
        partial = wait_status(client, batch_id, "in_progress")
        deadline = time.monotonic() + DEADLINE_S
        while partial.status == "in_progress" and partial.request_counts.completed == 0:
            assert time.monotonic() < deadline
            partial = client.batches.retrieve(batch_id)
        assert partial.status == "in_progress"
        assert 0 < partial.request_counts.completed < partial.request_counts.total == 10
        assert partial.output_file_id is None
        assert wait_status(client, batch_id, "finalizing").finalizing_at is not None
        done = wait_status(client, batch_id, "completed")
    assert done.request_counts.completed == 10


def test_cancel_delivers_the_done_ones_and_fails_the_rest(tmp_path):
    with MockServerProcess("--batch-ms-per-request", "50") as s:
        client = client_of(s)
        batch_id = submit(client, tmp_path, chat_lines(40))
        wait_status(client, batch_id, "in_progress")
        assert client.batches.cancel(batch_id).status in ("cancelling", "cancelled")
        batch = wait_status(client, batch_id, "cancelled")
        out, err = split_ids(client, batch)
        with pytest.raises(openai.BadRequestError):
            client.batches.cancel(batch_id)  # cancelled already
        assert s.stats()["batches"]["cancelled"] == 1
    assert batch.cancelling_at is not None and batch.cancelled_at is not None
    assert len(out) == batch.request_counts.completed < 40
    assert len(err) == batch.request_counts.failed > 0
    assert all(x["error"]["code"] == "batch_cancelled" for x in err)
    assert sorted(x["custom_id"] for x in out + err) == sorted(f"req-{i}" for i in range(40))


def test_enqueued_token_cap(tmp_path):
    # each line enqueues its prompt / 4 plus max_tokens 100: 5 lines, about 560 tokens
    with MockServerProcess("--batch-enqueued-tokens", "1000", "--batch-ms-per-request",
                           "100") as s:
        client = client_of(s)
        first = submit(client, tmp_path, chat_lines(5, max_tokens=100))
        wait_status(client, first, "in_progress")
        second = wait_status(client, submit(client, tmp_path, chat_lines(5, max_tokens=100)),
                             "failed", "in_progress", "completed")
        assert second.status == "failed"
        assert second.errors.data[0].code == "token_limit_exceeded"
        other = wait_status(client, submit(client, tmp_path, chat_lines(
            5, model="n", max_tokens=100)), "in_progress", "completed", "failed")
        assert other.status != "failed"  # the cap is per model
        alone = wait_status(client, submit(client, tmp_path, chat_lines(
            5, model="o", max_tokens=300)), "failed", "completed")
        assert alone.errors.data[0].code == "token_limit_exceeded"
        wait_status(client, first, "completed")  # its tokens are released
        third = wait_status(client, submit(client, tmp_path, chat_lines(5, max_tokens=100)),
                            "in_progress", "completed", "failed")
        assert third.status != "failed"


# -- the account --------------------------------------------------------------------------
def test_unknown_model_lines_go_to_the_error_file(tmp_path):
    with MockServerProcess("--model", "m") as s:
        client = client_of(s)
        batch = wait_status(client, submit(client, tmp_path, chat_lines(3, model="other")),
                            "completed")
        out, err = split_ids(client, batch)
    assert out == [] and batch.output_file_id is None and len(err) == 3
    for x in err:
        assert x["response"]["status_code"] == 404
        assert x["error"]["code"] == "model_not_found"


def test_a_revoked_key_is_refused_by_the_files_and_batch_routes(tmp_path):
    with MockServerProcess("--unauthorized-after", "0") as s:
        client = client_of(s)
        with pytest.raises(openai.AuthenticationError):
            client.files.list()
        with pytest.raises(openai.AuthenticationError):
            client.batches.list()


def test_the_fast_edge_refuses_batch_options():
    run = subprocess.run([sys.executable, "-m", "gristmill.backends.mock.server", "--fast",
                          "--batch-ms-per-request", "5", "--port", "0"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "--batch-ms-per-request" in run.stderr
    with MockServerProcess("--fast") as s:
        assert http("GET", s.base_url + "/batches")[0] == 404
