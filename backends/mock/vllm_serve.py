"""The mock server behind `vllm serve`'s command line, so a fleet (kind: vllm) can start,
supervise, balance and scrape mock servers where vLLM cannot run.

    GRISTMILL_VLLM_COMMAND="python -m gristmill.backends.mock.vllm_serve" gristmill run ...
    GRISTMILL_MOCK_ARGS="--latency-ms 20 --gpu"      # options for every mock server

It takes `serve MODEL --host H --port P [--served-model-name NAME]` and ignores vLLM's other
flags (dtype, lengths, batch sizes); the mock answers as the served name (else MODEL)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from gristmill.backends.mock.server import main as mock_main

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


def main() -> int:
    return mock_main(mock_argv(sys.argv[1:], os.environ.get(MOCK_ARGS_ENV, "")))


if __name__ == "__main__":
    sys.exit(main())
