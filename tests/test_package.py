"""Packaging rules of docs/architecture.md: m2f and m2f.runtime import without torch; the CLI's help needs nothing
heavy; every stage folder is importable as m2f.<stage>."""
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
                           "[importlib.import_module(m.name) "
                           "for m in pkgutil.walk_packages(rt.__path__, 'm2f.runtime.')]")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("stage", ["model", "plugins", "export", "calib", "runtime", "serving", "train", "validate"])
def test_stage_folders_are_m2f_subpackages(stage):
    import importlib
    from pathlib import Path

    module = importlib.import_module(f"m2f.{stage}")
    assert Path(module.__file__).parent.name == stage


def _import_all_with_blocked(packages: list[str], blocked: list[str]) -> subprocess.CompletedProcess:
    """Import every module of ``packages`` while the ``blocked`` modules are unimportable."""
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)
    walk = "; ".join(f"import {p} as pkg; [importlib.import_module(m.name) for m in "
                     f"pkgutil.walk_packages(pkg.__path__, {p + '.'!r})]" for p in packages)
    return _run(f"import sys, importlib, pkgutil; {block}; {walk}")


def test_model_imports_no_onnx():
    """m2f.model is the PyTorch model alone: no onnx, onnxruntime or tensorrt."""
    r = _import_all_with_blocked(["m2f.model"], ["onnx", "onnxruntime", "tensorrt"])
    assert r.returncode == 0, r.stderr


def test_model_and_export_do_not_import_the_runtime():
    """Dependency direction (docs/architecture.md): model/ and export/ never import from runtime/."""
    r = _import_all_with_blocked(["m2f.model", "m2f.export"], ["m2f.runtime"])
    assert r.returncode == 0, r.stderr


def test_precision_and_engine_building_need_no_torch():
    """Calibration, the fp16 converter and m2f build run where the fp32 ONNX is, without PyTorch."""
    r = _import_all_with_blocked(["m2f.calib"], ["torch"])
    assert r.returncode == 0, r.stderr
    r = _run(BLOCK_TORCH + "import m2f.calib.fp16, m2f.calib.engine, m2f.cli.build, m2f.cli.convert")
    assert r.returncode == 0, r.stderr


def test_serving_needs_no_torch():
    """A Triton server or its Python backend has the runtime, not PyTorch."""
    r = _import_all_with_blocked(["m2f.serving"], ["torch"])
    assert r.returncode == 0, r.stderr
    r = _run(BLOCK_TORCH + "import m2f.cli.serve, m2f.cli.triton_repo")
    assert r.returncode == 0, r.stderr


def test_op_contracts_and_numpy_ops_need_no_torch():
    """Each op folder's contract and the numpy implementation ONNX Runtime runs are read by the runtime, the
    parser check and the fp16 converter, on machines without PyTorch; the op packages themselves import nothing."""
    r = _run(BLOCK_TORCH + "import m2f.plugins, m2f.plugins.lowering, m2f.calib.trt_compat, m2f.runtime.custom_ops; "
                           "from m2f.plugins.ms_deform_attn import contract, onnxruntime_op; "
                           "from m2f.plugins.masked_attention import contract, onnxruntime_op")
    assert r.returncode == 0, r.stderr


def test_datasets_need_no_torch():
    r = _import_all_with_blocked(["m2f.datasets"], ["torch"])
    assert r.returncode == 0, r.stderr


def test_no_stage_imports_private_names_of_another():
    """e.g. train/ once imported model.checkpoint._detectron2_names; private helpers stay inside their stage."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stages = ["m2f", "model", "plugins", "export", "calib", "runtime", "train", "validate"]
    offences = []
    for stage in stages:
        for path in (root / stage).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("m2f."):
                    other = node.module.split(".")[1]
                    if other != stage and any(a.name.startswith("_") for a in node.names):
                        offences.append(f"{path.relative_to(root)}: from {node.module} import "
                                        f"{', '.join(a.name for a in node.names)}")
    assert not offences, offences


# The stages from the ground up (docs/architecture.md): a module may import its own stage and the ones before it.
STAGE_ORDER = ("m2f", "plugins", "model", "export", "runtime", "validate", "calib", "serving", "train", "cli")
CLI_SHARED = {"m2f.cli", "m2f.cli.args", "m2f.cli.main", "m2f.cli.signals"}  # what commands may share
ENTRY_POINTS = {"m2f.__main__"}  # `python -m m2f` starts the CLI


def _import_graph() -> dict[str, set[str]]:
    """{m2f module: m2f modules it imports anywhere (lazy imports inside functions count)}, read from the source;
    ``from package import name`` counts as the submodule when ``name`` is one, else as the package."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = {}
    for stage in STAGE_ORDER:
        for path in (root / stage).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            parts = parts if parts[0] == "m2f" else ["m2f", *parts]
            is_package = parts[-1] == "__init__"
            sources[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for module, (path, is_package) in sources.items():
        package = module if is_package else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in sources else base for a in node.names}
        graph[module] = {t for t in targets if t == "m2f" or t.startswith("m2f.")}
    return graph


def _stage(module: str) -> str:
    part = module.split(".")[1] if "." in module else "m2f"
    return part if part in STAGE_ORDER else "m2f"


def test_stages_import_only_themselves_and_the_stages_below():
    """No upward import and so no cycle between stages: runtime never imports serving, the ground floor never
    imports a stage."""
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    upward = sorted(f"{m} -> {t}" for m, targets in _import_graph().items() for t in targets
                    if order[_stage(t)] > order[_stage(m)] and m not in ENTRY_POINTS)
    assert not upward, upward


def test_nothing_outside_the_cli_imports_it_and_commands_import_no_other_command():
    graph = _import_graph()
    outside = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                     if _stage(t) == "cli" and _stage(m) != "cli" and m not in ENTRY_POINTS)
    assert not outside, outside
    between = sorted(f"{m} -> {t}" for m, targets in graph.items() if _stage(m) == "cli" and m not in CLI_SHARED
                     for t in targets if _stage(t) == "cli" and t not in CLI_SHARED and t != m)
    assert not between, between


def _extra(name: str) -> list:
    """The requirements an extra of pyproject.toml pulls in, m2f[...] self-references followed."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    found = []
    for text in extras[name]:
        requirement = Requirement(text)
        if requirement.name == "m2f":
            found += [r for extra in requirement.extras for r in _extra(extra)]
        else:
            found.append(requirement)
    return found


@pytest.mark.parametrize("extra, cuda_major, tensorrt", [
    ("jetson", 12, None),  # JetPack 6: CUDA 12 driver, TensorRT from JetPack (no aarch64 wheel on PyPI)
    ("trt-cu12", 12, "tensorrt-cu12"),
    ("trt", 12, "tensorrt-cu12"),
    ("trt-cu13", 13, "tensorrt-cu13"),
])
def test_install_extras_pick_a_cuda_python_the_driver_can_run(extra, cuda_major, tensorrt):
    """cuda-bindings of major N needs a CUDA N driver: each extra must only allow its own major."""
    requirements = {r.name: r for r in _extra(extra)}
    cuda = requirements["cuda-python"].specifier
    assert cuda.contains(f"{cuda_major}.9.0") and not cuda.contains(f"{cuda_major + 1}.0.0")
    assert not cuda.contains(f"{cuda_major - 1}.9.0")
    assert [n for n in requirements if n.startswith("tensorrt")] == ([tensorrt] if tensorrt else [])
    if tensorrt:
        assert requirements[tensorrt].specifier.contains("10.3.0") or cuda_major == 13
