"""Ahead-of-time kernel build: cubin + PTX for sm_87 and sm_90 without a GPU, and C launchers (both archs embedded,
PTX of the newest) that compile against the CUDA headers, pass exactly the parameters the compiled kernels declare,
and need no libcuda at link time."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (pip install m2f[kernels])")

from m2f.plugins.masked_attention import kernel as ma_kernel  # noqa: E402
from m2f.plugins.ms_deform_attn import kernel as msda_kernel  # noqa: E402

CUDA_INCLUDE = next((p for p in (Path("/usr/local/cuda/include"), Path("/usr/include")) if (p / "cuda.h").exists()),
                    None)


@pytest.fixture(scope="module")
def built(built_kernels):
    return built_kernels


def test_every_configuration_compiles_for_both_archs(built):
    out, manifest = built
    configs = msda_kernel.aot_kernels() + ma_kernel.aot_kernels()
    assert len(manifest["kernels"]) == 2 * len(configs)
    for entry in manifest["kernels"]:
        cubin = out / f"sm_{entry['arch']}" / f"{entry['name']}.cubin"
        ptx = (out / f"sm_{entry['arch']}" / f"{entry['name']}.ptx").read_text()
        assert cubin.read_bytes()[:4] == b"\x7fELF"
        assert f".target sm_{entry['arch']}" in ptx


def _ptx_param_count(ptx: str) -> int:
    entry = re.search(r"\.entry\s+\w+\((.*?)\)", ptx, re.S).group(1)
    return entry.count(".param")


def test_launchers_pass_what_the_kernels_declare(built):
    """Each launcher's args[] holds the kernel's non-constexpr arguments plus Triton's two scratch pointers, and its
    image table lists the cubin of every arch."""
    out, manifest = built
    for entry in manifest["kernels"]:
        source = (out / f"m2f_{entry['op']}.c").read_text()
        body = source.split(f"CUresult {entry['function']}(CUstream stream,")[1]
        args = re.search(r"void\* args\[\] = \{(.*?)\};", body).group(1).split(",")
        ptx = (out / f"sm_{entry['arch']}" / f"{entry['name']}.ptx").read_text()
        assert len(args) == _ptx_param_count(ptx), entry["name"]
        table = re.search(rf"{entry['name']}_cubins\[\] = \{{(.*?)\}};", source).group(1)
        assert f"{{{entry['arch']}, {entry['name']}_sm{entry['arch']}," in table


@pytest.mark.slow  # the plugin library's build compiles the same launchers (C++) in the default suite
@pytest.mark.skipif(CUDA_INCLUDE is None or shutil.which("gcc") is None,
                    reason="the CUDA headers (cuda.h) or gcc are not installed")
def test_launchers_compile_with_cuda_headers(built, tmp_path):
    out, manifest = built
    objects = []
    for name in ("m2f_ms_deform_attn", "m2f_masked_attention", "m2f_kernels"):
        objects.append(tmp_path / f"{name}.o")
        subprocess.run(["gcc", "-std=c99", "-fPIC", "-Wall", "-Werror", "-c", str(out / f"{name}.c"),
                        f"-isystem{CUDA_INCLUDE}", "-o", str(objects[-1])], check=True)
    # the headers from C++ (as the plugin library includes them), linked into a program without -lcuda
    cpp = tmp_path / "main.cpp"
    cpp.write_text('#include "m2f_ms_deform_attn.h"\n#include "m2f_masked_attention.h"\n#include "m2f_kernels.h"\n'
                   '#include <cstdio>\n'
                   "int main() {\n"
                   "  CUresult r = m2f_msda_fp32_d32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1);\n"
                   '  std::printf("%d|%s\\n", (int)r, m2f_kernels_last_error());\n  return 0;\n}\n')
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", str(cpp), *map(str, objects), f"-I{out}",
                    f"-isystem{CUDA_INCLUDE}", "-ldl", "-lpthread", "-o", str(tmp_path / "main")], check=True)
    # without a GPU driver the launch fails with one sentence instead of crashing
    run = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    if shutil.which("nvidia-smi") is None:
        code, message = run.stdout.strip().split("|", 1)
        assert int(code) != 0 and "libcuda.so.1" in message and "could not be loaded" in message


def test_cli_rejects_bad_arch(capsys):
    from m2f.cli import main

    assert main(["plugins", "build-kernels", "--arch", "sm_5x", "-o", "unused"]) == 2
    assert "comma-separated list of SM versions" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["99", "101", "60"])
def test_cli_refuses_architectures_triton_cannot_build(arch, tmp_path, capsys):
    """sm_99 and sm_101 abort inside LLVM (no Python error): refused by name before any compiler runs."""
    from m2f.cli import main

    assert main(["plugins", "build-kernels", "--arch", f"87,{arch}", "-o", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"sm_{arch} is not a GPU architecture this build supports" in err
    assert "87 (Jetson Orin)" in err and not (tmp_path / "k").exists()
