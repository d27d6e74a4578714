"""The layers point one way (the import-linter contracts in pyproject.toml), and the engine
never probes a backend for what it can do."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_view(tmp: Path) -> Path:
    """The tree as the installed package lays it out: grimp, under import-linter, finds a
    package's modules by walking one folder, and gristmill.backends lives in another one."""
    view = tmp / "view"
    shutil.copytree(ROOT / "engine", view / "gristmill",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "backends", view / "gristmill" / "backends",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return view


def lint_imports(view: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(view), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_layer_contracts_hold(tmp_path):
    done = lint_imports(package_view(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def test_a_core_module_importing_a_backend_breaks_a_contract(tmp_path):
    view = package_view(tmp_path)
    (view / "gristmill" / "scheduling" / "shortcut.py").write_text(
        "from gristmill.backends.openai_http.backend import OpenAIHTTPBackend\n")
    done = lint_imports(view)
    assert done.returncode == 1
    assert "The engine's core knows no backend, no run and no command BROKEN" in done.stdout
    assert "gristmill.scheduling.shortcut -> gristmill.backends.openai_http.backend" in done.stdout


def getattr_on_backends(source: str) -> list[int]:
    """Lines where `getattr` or `hasattr` looks at something named like a backend."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and node.args
                and "backend" in ast.unparse(node.args[0]).lower()):
            lines.append(node.lineno)
    return lines


def test_nothing_probes_a_backend_with_getattr():
    found = {str(p.relative_to(ROOT)): lines for p in [*ROOT.glob("engine/**/*.py"),
                                                       *ROOT.glob("backends/**/*.py")]
             if (lines := getattr_on_backends(p.read_text()))}
    assert found == {}
    assert getattr_on_backends("http = getattr(client.backend, 'inner', None)") == [1]


def test_every_package_folder_is_in_the_distribution():
    """setuptools is given the packages by name (the folders map to one import root): a new
    folder missing from pyproject.toml would be missing from the installed package."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    roots = {"engine": "gristmill", "backends": "gristmill.backends",
             "configs": "gristmill.configs"}
    found = {".".join([name, *init.parent.relative_to(ROOT / folder).parts])
             for folder, name in roots.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert listed == found
