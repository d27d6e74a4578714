"""The mock server's fast edge (`--fast`) as HTTP/1.1 over raw sockets: framing, keep-alive,
order, refusals and disconnects. Its answers are checked against the aiohttp edge's in
tests/test_mock_server.py (the `server` fixture runs both)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest

from gristmill.backends.mock.process import MockServerProcess
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(30)


def request(body: dict, path: str = "/v1/chat/completions", extra: bytes = b"") -> bytes:
    data = orjson.dumps(body)
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (path.encode(), len(data), extra) + data)


def chat(content: str, **extra: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
    return status, headers, await reader.readexactly(int(headers["content-length"]))


@pytest.fixture(scope="module")
def fast():
    with MockServerProcess("--fast", "--latency-ms", "0-40", "--output-tokens", "5") as s:
        yield s


async def connect(server: MockServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_pipelined_requests_are_answered_in_order_on_one_connection(fast):
    reader, writer = await connect(fast)
    writer.write(b"".join(request(chat(f"question {i}")) for i in range(6)))  # one segment
    answers = [await read_response(reader) for _ in range(6)]
    for status, headers, body in answers:
        assert status == 200 and headers["content-type"] == "application/json"
    writer.close()
    # the same prompts one by one (latencies vary from 0 to 40 ms): the same answers, in order
    texts = [orjson.loads(b)["choices"][0]["message"]["content"] for _, _, b in answers]
    reader, writer = await connect(fast)
    for i in range(6):
        writer.write(request(chat(f"question {i}")))
        _, _, body = await read_response(reader)
        assert orjson.loads(body)["choices"][0]["message"]["content"] == texts[i]
    writer.close()


async def test_a_body_arriving_in_pieces_is_read_whole(fast):
    reader, writer = await connect(fast)
    data = request(chat("x" * 5000))
    for at in range(0, len(data), 700):
        writer.write(data[at:at + 700])
        await writer.drain()
        await asyncio.sleep(0.005)
    status, _, body = await read_response(reader)
    assert status == 200 and orjson.loads(body)["object"] == "chat.completion"
    writer.close()


async def test_a_stream_is_chunked_sse_and_the_connection_stays_open(fast):
    reader, writer = await connect(fast)
    writer.write(request(chat("stream me", stream=True, stream_options={"include_usage": True})))
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"text/event-stream" in head
    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
    events = (await reader.readexactly(size)).split(b"\n\n")
    assert await reader.readexactly(7) == b"\r\n0\r\n\r\n"
    assert events[-2] == b"data: [DONE]" and b'"usage"' in events[-3]
    writer.write(request(chat("again")))  # keep-alive after a stream
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_connection_close_is_honoured(fast):
    reader, writer = await connect(fast)
    writer.write(request(chat("bye"), extra=b"Connection: close\r\n"))
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await reader.read() == b""  # the server closed its end
    writer.close()


@pytest.mark.parametrize("data, status", [
    (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     411),
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400),
    (b"GET /nowhere HTTP/1.1\r\n\r\n", 404),
])
async def test_requests_it_cannot_serve_get_an_error(fast, data, status):
    reader, writer = await connect(fast)
    writer.write(data)
    got, _, body = await read_response(reader)
    assert got == status and orjson.loads(body)["error"]["message"]
    if status != 404:  # the framing is lost: the server closes
        assert await reader.read() == b""
    writer.close()


async def test_a_client_leaving_before_its_answer_is_counted_and_nothing_is_sent():
    with MockServerProcess("--fast", "--latency-ms", "300") as server:
        reader, writer = await connect(server)
        writer.write(request(chat("too slow")))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.4)  # past the answer's timer
        stats = server.stats()
        assert stats["requests"] == 1 and stats["completed"] == 0
        assert stats["disconnects"] == 1 and stats["in_flight"] == 0
        assert server.stop() == 0  # and it shuts down cleanly


def test_options_the_fast_edge_cannot_honour_are_refused_by_name():
    out = subprocess.run([sys.executable, "-m", "gristmill.backends.mock.server", "--port", "0", "--fast",
                          "--rate-500", "0.1", "--tokens-per-s", "50", "--plant-rate", "0.1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 2
    assert "--tokens-per-s" in out.stderr and "--rate-429/500/reset/cut/hang" in out.stderr
    assert "--plant-rate" in out.stderr
