"""Ahead-of-time kernel build: cubin + PTX for sm_87 and sm_90 without a GPU, and C launchers that compile against
the CUDA headers and pass exactly the parameters the compiled kernels declare."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (pip install m2f[kernels])")

from m2f.plugins import masked_attention, ms_deform_attn  # noqa: E402
from m2f.plugins.aot import build_kernels  # noqa: E402

CUDA_INCLUDE = next((p for p in (Path("/usr/local/cuda/include"), Path("/usr/include")) if (p / "cuda.h").exists()),
                    None)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels")
    return out, build_kernels(out, archs=(87, 90))


def test_every_configuration_compiles_for_both_archs(built):
    out, manifest = built
    configs = ms_deform_attn.aot_kernels() + masked_attention.aot_kernels()
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
    """Each launcher's args[] holds the kernel's non-constexpr arguments plus Triton's two scratch pointers."""
    out, manifest = built
    for entry in manifest["kernels"]:
        arch_dir = out / f"sm_{entry['arch']}"
        source = (arch_dir / f"m2f_{entry['op']}_sm{entry['arch']}.c").read_text()
        body = source.split(f"CUresult {entry['function']}(CUstream stream,")[1]
        args = re.search(r"void \*args\[\] = \{(.*?)\};", body).group(1).split(",")
        assert len(args) == _ptx_param_count((arch_dir / f"{entry['name']}.ptx").read_text()), entry["name"]


@pytest.mark.skipif(CUDA_INCLUDE is None or shutil.which("gcc") is None,
                    reason="the CUDA headers (cuda.h) or gcc are not installed")
def test_launchers_compile_with_cuda_headers(built, tmp_path):
    out, manifest = built
    for arch in manifest["archs"]:
        for op in ("ms_deform_attn", "masked_attention"):
            source = out / f"sm_{arch}" / f"m2f_{op}_sm{arch}.c"
            subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-c", str(source), f"-I{CUDA_INCLUDE}",
                            "-o", str(tmp_path / f"{op}_{arch}.o")], check=True)
            # and from C++, as the TensorRT plugin library will include them
            cpp = tmp_path / f"{op}_{arch}.cpp"
            cpp.write_text(f'#include "m2f_{op}_sm{arch}.h"\nint main() {{ return 0; }}\n')
            subprocess.run(["g++", "-c", str(cpp), f"-I{CUDA_INCLUDE}", f"-I{out / f'sm_{arch}'}",
                            "-o", str(tmp_path / f"{op}_{arch}_cpp.o")], check=True)


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
