"""Packaging rules of design.md §1: m2f and m2f.runtime import without torch; the CLI's help needs nothing heavy;
every stage folder is importable as m2f.<stage>."""
import subprocess
import sys

import pytest

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_without_torch():
    r = _run(BLOCK_TORCH + "import m2f, m2f.runtime, m2f.runtime.resize, m2f.testing, m2f.cli; "
                           "import sys; assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]; "
                           "print(m2f.__version__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == __import__("m2f").__version__


def test_cli_help_without_torch():
    r = _run(BLOCK_TORCH + "from m2f.cli import main; main(['--help'])")
    assert r.returncode == 0, r.stderr
    assert "inspect" in r.stdout and "demo" in r.stdout


def test_missing_dependency_is_one_sentence():
    r = _run(BLOCK_TORCH + "from m2f.cli import main; raise SystemExit(main(['inspect', 'x.pkl']))")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "pip install 'm2f[model]'" in r.stderr and "Traceback" not in r.stderr


def test_runtime_never_imports_torch():
    """Every module under m2f.runtime, imported with torch blocked."""
    r = _run(BLOCK_TORCH + "import pkgutil, importlib, m2f.runtime as rt; "
                           "[importlib.import_module(m.name) for m in pkgutil.walk_packages(rt.__path__, 'm2f.runtime.')]")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("stage", ["model", "plugins", "export", "calib", "runtime", "train", "validate"])
def test_stage_folders_are_m2f_subpackages(stage):
    import importlib
    from pathlib import Path

    module = importlib.import_module(f"m2f.{stage}")
    assert Path(module.__file__).parent.name == stage
