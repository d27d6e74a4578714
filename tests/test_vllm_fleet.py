"""Fleet placement and config, without starting anything: the command lines and environments
a GPU box would get (one server per GPU, tensor-parallel groups, extra args, env)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gristmill.backends.vllm.fleet import (BIND, VLLMFleet, log_name, server_specs,
                                           split_cpu_binding)
from gristmill.backends.vllm.runtime import Runtime
from gristmill.backends.vllm.server import VLLMServer, serve_env
from gristmill.config.pipeline import BackendConfig
from gristmill.config.load import validate_config
from gristmill.errors import ConfigError
from tests.conftest import pipeline_config

RUNTIME = Runtime(Path("/opt/venv/bin/python"), {"VLLM_TARGET_DEVICE": "cpu"})
PREFIX = ["/opt/venv/bin/python", "-m", "vllm.entrypoints.cli.main"]


def vllm_backend(**fleet) -> BackendConfig:
    return BackendConfig.model_validate({"kind": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct",
                                         "fleet": fleet})


def commands(backend: BackendConfig) -> list[tuple[list[str], dict[str, str]]]:
    fleet = VLLMFleet.from_config("default", backend)
    servers = [VLLMServer(spec, RUNTIME, port=port)
               for spec, port in zip(fleet.specs, fleet.ports)]
    return [(s.command(), serve_env(s.spec, {"PATH": "/bin", "HF_HOME": "/data/hf"}))
            for s in servers]


def test_one_server_per_gpu_each_on_its_own_port():
    backend = vllm_backend(gpus=[0, 1, 2, 3], max_model_len=8192, max_num_seqs=256,
                           prefix_caching=True, dtype="bfloat16")
    built = commands(backend)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in built] == ["0", "1", "2", "3"]
    ports = [cmd[cmd.index("--port") + 1] for cmd, _ in built]
    assert len(set(ports)) == 4
    cmd, env = built[0]
    assert cmd == [*PREFIX, "serve", "Qwen/Qwen2.5-7B-Instruct", "--host", "127.0.0.1",
                   "--port", ports[0], "--dtype", "bfloat16",
                   "--served-model-name", "Qwen/Qwen2.5-7B-Instruct",
                   "--max-model-len", "8192", "--max-num-seqs", "256",
                   "--enable-prefix-caching"]
    assert "--tensor-parallel-size" not in cmd
    assert env["PATH"] == "/bin" and env["HF_HOME"] == "/data/hf"


def test_tensor_parallel_groups_of_two_extra_args_and_env_overrides():
    backend = vllm_backend(model="/models/qwen-72b", gpus=[4, 5, 6, 7], gpus_per_server=2,
                           extra_args=["--gpu-memory-utilization", "0.92"],
                           env={"HF_HOME": "/scratch/hf", "NCCL_P2P_DISABLE": "1"},
                           prefix_caching=False, enforce_eager=True)
    built = commands(backend)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in built] == ["4,5", "6,7"]
    for cmd, env in built:
        assert cmd[len(PREFIX):len(PREFIX) + 2] == ["serve", "/models/qwen-72b"]
        assert cmd[cmd.index("--served-model-name") + 1] == "Qwen/Qwen2.5-7B-Instruct"
        assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
        assert cmd[-2:] == ["--gpu-memory-utilization", "0.92"]  # last: they may override
        assert "--no-enable-prefix-caching" in cmd and "--enforce-eager" in cmd
        assert env["HF_HOME"] == "/scratch/hf" and env["NCCL_P2P_DISABLE"] == "1"


def test_without_gpus_servers_see_the_inherited_devices():
    specs = server_specs(vllm_backend(servers=2).fleet, "tiny")
    assert [s.devices for s in specs] == [(), ()]
    assert "CUDA_VISIBLE_DEVICES" not in serve_env(specs[0], {"PATH": "/bin"})
    assert specs[0].model == "tiny"  # no fleet.model: the backend's model is loaded


def test_cpu_servers_of_a_fleet_share_the_bound_cores_out(monkeypatch):
    monkeypatch.delenv(BIND, raising=False)
    specs = server_specs(vllm_backend(servers=2).fleet, "m")
    bound = Runtime(Path("/py"), {}, {BIND: "0,1,2,3", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
    split = split_cpu_binding(specs, bound)
    assert [s.env[BIND] for s in split] == ["0,1", "2,3"]
    assert [serve_env(s, bound.env())[BIND] for s in split] == ["0,1", "2,3"]
    own = [specs[0], replace(specs[1], env={BIND: "3"})]
    assert [s.env[BIND] for s in split_cpu_binding(own, bound)] == ["0,1", "3"]
    # nothing to share: one server, no binding (a busy machine, a GPU box), a range, too few
    assert split_cpu_binding(specs[:1], bound) == specs[:1]
    assert split_cpu_binding(specs, Runtime(Path("/py"))) == specs
    assert split_cpu_binding(specs, Runtime(Path("/py"), {}, {BIND: "0-3"})) == specs
    assert split_cpu_binding(specs * 3, bound) == specs * 3  # 6 servers, 4 cores


def test_a_vllm_backend_scrapes_metrics_and_names_logs_per_server(tmp_path):
    backend = vllm_backend()
    assert backend.scrape_metrics and backend.fleet.device_groups() == [()]
    fleet = VLLMFleet.from_config("default", backend, log_dir=tmp_path)
    assert fleet.base_urls == [f"http://127.0.0.1:{fleet.ports[0]}/v1"]
    assert log_name("default", 1) == "vllm-1.log" and log_name("judge", 0) == "vllm-judge-0.log"
    assert not vllm_backend(gpus=[0]).model_copy(update={"scrape_metrics": False}).scrape_metrics


@pytest.mark.parametrize("backend, message", [
    ({"kind": "vllm", "model": "m", "fleet": {"gpus": [0, 1, 2], "gpus_per_server": 2}},
     "do not split into groups of gpus_per_server=2"),
    ({"kind": "vllm", "model": "m", "fleet": {"gpus": [0, 0]}}, "lists a GPU twice"),
    ({"kind": "vllm", "model": "m", "fleet": {"gpus": [0, 1], "servers": 3}},
     "servers: 3 does not match"),
    ({"kind": "vllm", "model": "m", "fleet": {"extra_args": ["--port=9000"]}},
     "is set by gristmill"),
    ({"kind": "vllm", "model": "m", "fleet": {"extra_args": ["-tp", "2"]}}, "gpus_per_server"),
    ({"kind": "vllm", "model": "m", "base_url": "http://127.0.0.1:8000/v1"},
     "is reached at the servers it starts"),
    ({"model": "m", "base_url": "http://127.0.0.1:8000/v1", "fleet": {}}, "add kind: vllm"),
    ({"model": "m"}, "give at least one URL"),
])
def test_fleet_config_errors_name_the_field_and_the_fix(tmp_path, backend, message):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["backends"]["default"] = backend
    with pytest.raises(ConfigError, match=message):
        validate_config(data)


def test_one_command_from_a_model_name_to_a_fleet_of_tensor_parallel_pairs():
    from gristmill.cli.main import build_parser
    from gristmill.config.load import load_config, with_cli_overrides

    args = build_parser().parse_args(["run", "agentinstruct", "--vllm-model",
                                      "Qwen/Qwen2.5-7B-Instruct", "--gpus", "0,1,2,3",
                                      "--gpus-per-server", "2"])
    config = with_cli_overrides(load_config(args.config), vllm_model=args.vllm_model,
                                gpus=args.gpus, gpus_per_server=args.gpus_per_server)
    backend = config.backends["default"]
    assert backend.kind == "vllm" and backend.model == "Qwen/Qwen2.5-7B-Instruct"
    assert backend.scrape_metrics and backend.max_in_flight == 2 * 256 and not backend.base_urls
    built = commands(backend)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in built] == ["0,1", "2,3"]
    assert all(cmd[cmd.index("--tensor-parallel-size") + 1] == "2" for cmd, _ in built)
    with pytest.raises(ConfigError, match="add --vllm-model"):
        with_cli_overrides(load_config("agentinstruct"), gpus=[0])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "demo", "--gpus", "zero"])


def test_resume_may_move_a_fleet_but_not_change_its_model():
    from gristmill.config.resume import answer_changes

    def dumped(**fleet):
        return {"backends": {"default": vllm_backend(**fleet).model_dump(mode="json")}}

    old = dumped(gpus=[0, 1], max_num_seqs=128, dtype="bfloat16")
    assert answer_changes(old, dumped(gpus=[2, 3, 4, 5], gpus_per_server=2, max_num_seqs=256,
                                      dtype="bfloat16", env={"X": "1"})) == []
    assert answer_changes(old, dumped(gpus=[0, 1], max_num_seqs=128, dtype="float16")) == \
        ["backends.default.fleet.dtype"]
