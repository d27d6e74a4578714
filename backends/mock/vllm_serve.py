"""The mock behind vLLM's command line, so a fleet (kind: vllm) can start, supervise,
balance and scrape mock servers where vLLM cannot run, and batch mode can run files through
a mock `vllm run-batch`.

    GRISTMILL_VLLM_COMMAND="python -m gristmill.backends.mock.vllm_serve" gristmill run ...
    GRISTMILL_MOCK_ARGS="--latency-ms 20 --gpu"      # options for every mock server

It takes `serve MODEL --host H --port P [--served-model-name NAME]`, or `run-batch -i IN -o
OUT --model MODEL [--served-model-name NAME]` (each line answered by the online generator, in
vLLM's output format), and ignores vLLM's other flags (dtype, lengths, batch sizes); the mock
answers as the served name (else MODEL)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import orjson

from gristmill.backends.mock.faults import add_arguments
from gristmill.backends.mock.judge import add_judge_arguments, answer_for
from gristmill.backends.mock.server import main as mock_main
from gristmill.backends.mock.wire import completion_body

MOCK_ARGS_ENV = "GRISTMILL_MOCK_ARGS"


def mock_argv(vllm_argv: list[str], extra: str = "") -> list[str]:
    """The mock server's arguments for a `vllm serve` command line."""
    parser = argparse.ArgumentParser(prog="vllm", add_help=False)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name")
    args, _vllm_only = parser.parse_known_args(vllm_argv)
    return ["--host", args.host, "--port", str(args.port),
            "--model", args.served_model_name or args.model, *shlex.split(extra)]


def run_batch(vllm_argv: list[str], extra: str = "") -> int:
    """`vllm run-batch`: every input line answered, in vLLM's output format."""
    parser = argparse.ArgumentParser(prog="vllm", add_help=False)
    parser.add_argument("command", choices=["run-batch"])
    parser.add_argument("-i", "--input-file", required=True)
    parser.add_argument("-o", "--output-file", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    args, _vllm_only = parser.parse_known_args(vllm_argv)
    mock = argparse.ArgumentParser(add_help=False)
    add_arguments(mock)
    add_judge_arguments(mock)
    options, _server_only = mock.parse_known_args(shlex.split(extra))
    served = args.served_model_name or args.model
    with open(args.input_file, "rb") as source, open(args.output_file, "wb") as out:
        for number, raw in enumerate(source):
            line = orjson.loads(raw)
            body, chat = line["body"], line["url"].endswith("chat/completions")
            if body.get("model") != served:
                response = {"status_code": 404, "request_id": f"req-{number}", "body": {
                    "object": "error", "message": f"The model `{body.get('model')}` does "
                    "not exist.", "type": "NotFoundError", "code": 404}}
            else:
                answer, _ = answer_for(body, chat, options.output_tokens, options.judge_trigger)
                response = {"status_code": 200, "request_id": f"req-{number}",
                            "body": completion_body(chat, answer, f"cmpl-{number}", served)}
            out.write(orjson.dumps({"id": f"vllm-{number}", "custom_id": line["custom_id"],
                                    "response": response, "error": None}) + b"\n")
    return 0


def main() -> int:
    extra = os.environ.get(MOCK_ARGS_ENV, "")
    if sys.argv[1:2] == ["run-batch"]:
        return run_batch(sys.argv[1:], extra)
    return mock_main(mock_argv(sys.argv[1:], extra))


if __name__ == "__main__":
    sys.exit(main())
