"""Ahead-of-time build of the Triton kernels: cubin + PTX per GPU architecture and a C launcher per op and
architecture, with no GPU needed (``triton.compile`` with an explicit target; see design §2.3).

Layout written under the output folder, for each architecture ``sm_XX``:
    sm_XX/<config>.cubin, sm_XX/<config>.ptx       one per kernel configuration (``aot_kernels()`` of each op file)
    sm_XX/m2f_<op>_smXX.h, .c                      launchers: ``CUresult m2f_<config>_smXX(CUstream, pointers...,
                                                   sizes...)``, plus ``m2f_<op>_smXX_load()`` to load every module
                                                   up front (call it once, before launching from several threads)
    manifest.json                                  configurations, architectures, shared memory, warps, versions
Launchers take raw device pointers (CUdeviceptr), int32 sizes and a CUstream: no TensorRT types. They use the CUDA
driver API (link with -lcuda).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from m2f.errors import M2FError, require

from . import masked_attention, ms_deform_attn
from .triton_support import AotKernel, interpreting

OPS = {"ms_deform_attn": ms_deform_attn, "masked_attention": masked_attention}
DEFAULT_ARCHS = (87, 80, 86, 89, 90)
# Architectures the AOT build accepts: real GPUs that Triton 3.9's ptxas compiles for (each built here). Others are
# refused up front, since some (e.g. sm_99, sm_101) abort inside LLVM instead of raising an error.
SUPPORTED_ARCHS = {70: "V100", 72: "Jetson Xavier", 75: "T4, RTX 20xx", 80: "A100", 86: "A10, RTX 30xx",
                   87: "Jetson Orin", 89: "L4, RTX 40xx", 90: "H100, H200", 100: "B200", 103: "B300",
                   110: "Jetson Thor", 120: "RTX 50xx", 121: "DGX Spark"}
_C_TYPES = {"i32": "int32_t", "fp32": "float"}


def compile_kernel(config: AotKernel, arch: int):
    """-> triton's compiled kernel (asm["cubin"], asm["ptx"], metadata) for sm_<arch>."""
    import triton
    from triton.backends.compiler import GPUTarget

    signature = dict(config.signature)
    signature.update({k: "constexpr" for k in config.constexprs})
    source = triton.compiler.ASTSource(fn=config.kernel, signature=signature, constexprs=dict(config.constexprs))
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": config.num_warps, "num_stages": config.num_stages})


def _c_params(config: AotKernel) -> list[tuple[str, str]]:
    """(C type, name) of the launcher's arguments after the stream: kernel arguments in order, then extra sizes."""
    params = [("CUdeviceptr" if t.startswith("*") else _C_TYPES[t], name) for name, t in config.signature.items()]
    return params + [("int32_t", name) for name in config.extra_args]


def launcher_source(op: str, arch: int, compiled: list[tuple[AotKernel, object]]) -> tuple[str, str]:
    """(header, C source) of the launchers of one op for one architecture."""
    guard = f"M2F_{op.upper()}_SM{arch}_H"
    decls, bodies, loads = [], [], []
    for config, kernel in compiled:
        fn = f"m2f_{config.name}_sm{arch}"
        params = ", ".join(f"{t} {n}" for t, n in _c_params(config))
        decls.append(f"/* {config.name}: {', '.join(f'{k}={v}' for k, v in config.constexprs.items())}, "
                     f"{config.num_warps} warps */\nCUresult {fn}(CUstream stream, {params});")
        cubin = kernel.asm["cubin"]
        shared = int(kernel.metadata.shared)
        data = ",".join(str(b) for b in cubin)
        args = ", ".join([f"&{name}" for name in config.signature] + ["&global_scratch", "&profile_scratch"])
        gx, gy, gz = config.grid
        bodies.append(f"""
static const unsigned char {fn}_cubin[{len(cubin)}] = {{{data}}};
static CUmodule {fn}_module;
static CUfunction {fn}_function;

static CUresult {fn}_load(void) {{
    CUresult status;
    if ({fn}_function) return CUDA_SUCCESS;
    status = cuModuleLoadData(&{fn}_module, {fn}_cubin);
    if (status != CUDA_SUCCESS) return status;
    status = cuModuleGetFunction(&{fn}_function, {fn}_module, "{kernel.metadata.name}");
    if (status == CUDA_SUCCESS && {shared} > 49152)
        status = cuFuncSetAttribute({fn}_function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, {shared});
    return status;
}}

CUresult {fn}(CUstream stream, {params}) {{
    CUdeviceptr global_scratch = 0, profile_scratch = 0; /* Triton appends these two to every kernel */
    void *args[] = {{{args}}};
    unsigned int gx = (unsigned int)({gx}), gy = (unsigned int)({gy}), gz = (unsigned int)({gz});
    CUresult status = {fn}_load();
    if (status != CUDA_SUCCESS) return status;
    if (gx == 0 || gy == 0 || gz == 0) return CUDA_SUCCESS;
    return cuLaunchKernel({fn}_function, gx, gy, gz, {32 * config.num_warps}, 1, 1, {shared}, stream, args, NULL);
}}""")
        loads.append(f"    if ((status = {fn}_load()) != CUDA_SUCCESS) return status;")
    header = (f"/* Generated by `m2f plugins build-kernels`: {op} kernels for sm_{arch}. Do not edit. */\n"
              f"#ifndef {guard}\n#define {guard}\n#include <cuda.h>\n#include <stdint.h>\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
              f"/* Loads every kernel module of this file into the current context; call once before launching. */\n"
              f"CUresult m2f_{op}_sm{arch}_load(void);\n\n" + "\n\n".join(decls) +
              "\n\n#ifdef __cplusplus\n}\n#endif\n#endif\n")
    source = (f"/* Generated by `m2f plugins build-kernels`: {op} kernels for sm_{arch}. Do not edit. */\n"
              f"#include \"m2f_{op}_sm{arch}.h\"\n" + "\n".join(bodies) +
              f"\n\nCUresult m2f_{op}_sm{arch}_load(void) {{\n    CUresult status;\n" + "\n".join(loads) +
              "\n    return CUDA_SUCCESS;\n}\n")
    return header, source


def build_kernels(out: str | Path, archs=DEFAULT_ARCHS, ops=tuple(OPS), progress=lambda msg: None) -> dict:
    """Compile every configuration of ``ops`` for every architecture in ``archs`` into ``out``; returns the
    manifest (also written to out/manifest.json)."""
    require("triton", "kernels", "the AOT kernel build")
    import triton

    out = Path(out)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise M2FError(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    if interpreting():
        return _build_in_child(out, archs, ops)
    manifest = {"triton": triton.__version__, "archs": [], "kernels": []}
    for arch in archs:
        arch_dir = out / f"sm_{arch}"
        arch_dir.mkdir(parents=True, exist_ok=True)
        for op in ops:
            compiled = []
            for config in OPS[op].aot_kernels():
                progress(f"sm_{arch} {config.name}")
                try:
                    kernel = compile_kernel(config, arch)
                except Exception as e:  # triton raises many types; say which config failed and why
                    raise M2FError(f"compiling {config.name} for sm_{arch} failed: {e}") from None
                (arch_dir / f"{config.name}.cubin").write_bytes(kernel.asm["cubin"])
                (arch_dir / f"{config.name}.ptx").write_text(kernel.asm["ptx"])
                compiled.append((config, kernel))
                manifest["kernels"].append({"arch": arch, "op": op, "name": config.name,
                                            "function": f"m2f_{config.name}_sm{arch}",
                                            "constexprs": config.constexprs, "num_warps": config.num_warps,
                                            "shared_bytes": int(kernel.metadata.shared),
                                            "cubin_bytes": len(kernel.asm["cubin"])})
            header, source = launcher_source(op, arch, compiled)
            (arch_dir / f"m2f_{op}_sm{arch}.h").write_text(header)
            (arch_dir / f"m2f_{op}_sm{arch}.c").write_text(source)
        manifest["archs"].append(arch)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _build_in_child(out: Path, archs, ops) -> dict:
    """Under TRITON_INTERPRET=1 Triton turns every kernel into an interpreted function that cannot be compiled, so
    the build runs in a child Python without that variable."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "m2f.plugins.aot", str(out), ",".join(map(str, archs)), ",".join(ops)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise M2FError(f"the kernel build failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
    return json.loads((out / "manifest.json").read_text())


if __name__ == "__main__":
    build_kernels(sys.argv[1], [int(a) for a in sys.argv[2].split(",")], tuple(sys.argv[3].split(",")))
