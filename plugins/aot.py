"""Ahead-of-time build of the Triton kernels: cubin + PTX per GPU architecture and one C launcher per kernel
configuration, with no GPU needed (``triton.compile`` with an explicit target; see docs/ops.md).

Layout written under the output folder:
    sm_XX/<config>.cubin, sm_XX/<config>.ptx   one per kernel configuration (``aot_kernels()`` of each op) and arch
    m2f_<op>.h, m2f_<op>.c                      launchers ``CUresult m2f_<config>(CUstream, pointers..., sizes...)``
                                                with the cubins of every arch and the PTX of the newest embedded
    m2f_kernels.h, m2f_kernels.c                their runtime (copied from plugins/common/): libcuda loaded with
                                                dlopen, the image chosen per GPU, modules cached per CUDA context
    m2f_op_contracts.h                          the ops' names, versions, field names, input ranks and head-dim
                                                limit, from each op's contract.py (the plugins include it)
    manifest.json                               configurations, architectures, shared memory, warps, versions
Launchers take raw device pointers (CUdeviceptr), int32 sizes and a CUstream: no TensorRT types. Build them with
m2f_kernels.c and -ldl -lpthread (no -lcuda: the driver is loaded at first use).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

from m2f.errors import ArgumentError, M2FError, require

from .masked_attention import contract as ma_contract
from .masked_attention import kernel as masked_attention
from .ms_deform_attn import contract as msda_contract
from .ms_deform_attn import kernel as ms_deform_attn
from .triton_support import AotKernel, interpreting

OPS = {"ms_deform_attn": ms_deform_attn, "masked_attention": masked_attention}
DEFAULT_ARCHS = (87, 80, 86, 89, 90)
# Architectures the AOT build accepts: real GPUs that Triton 3.9's ptxas compiles for (each built here). Others are
# refused up front, since some (e.g. sm_99, sm_101) abort inside LLVM instead of raising an error.
SUPPORTED_ARCHS = {70: "V100", 72: "Jetson Xavier", 75: "T4, RTX 20xx", 80: "A100", 86: "A10, RTX 30xx",
                   87: "Jetson Orin", 89: "L4, RTX 40xx", 90: "H100, H200", 100: "B200", 103: "B300",
                   110: "Jetson Thor", 120: "RTX 50xx", 121: "DGX Spark"}
COMMON = Path(__file__).parent / "common"
RUNTIME_FILES = ("m2f_kernels.h", "m2f_kernels.c")
CONTRACTS_HEADER = "m2f_op_contracts.h"
_C_TYPES = {"i32": "int32_t", "fp32": "float"}


def _template(name: str) -> Template:
    return Template((COMMON / name).read_text())


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


def _bytes(data: bytes) -> str:
    return ",".join(str(b) for b in data)


def launcher_source(op: str, compiled: list[tuple[AotKernel, dict[int, object]]]) -> tuple[str, str]:
    """(header, C source) of the launchers of one op; ``compiled``: per configuration its kernel per arch."""
    archs = sorted(next(iter(compiled))[1])
    newest = archs[-1]
    info = dict(op=op, archs=", ".join(f"sm_{a}" for a in archs), ptx_arch=f"sm_{newest}")
    decls, bodies = [], []
    for config, kernels in compiled:
        params = ", ".join(f"{t} {n}" for t, n in _c_params(config))
        constexprs = ", ".join(f"{k}={v}" for k, v in config.constexprs.items())
        decls.append(f"/* {config.name}: {constexprs}, {config.num_warps} warps */\n"
                     f"CUresult m2f_{config.name}(CUstream stream, {params});")
        images = [f"static const unsigned char {config.name}_sm{a}[] = {{{_bytes(kernels[a].asm['cubin'])}}};"
                  for a in archs]
        images.append(f"static const char {config.name}_ptx[] = {{{_bytes(kernels[newest].asm['ptx'].encode())},0}};")
        table = ", ".join(f"{{{a}, {config.name}_sm{a}, sizeof {config.name}_sm{a}, {int(kernels[a].metadata.shared)}}}"
                          for a in archs)
        gx, gy, gz = config.grid
        bodies.append(_template("kernel.c.in").substitute(
            name=config.name, constexprs=constexprs, warps=config.num_warps, images="\n".join(images),
            cubin_table=table, entry=kernels[newest].metadata.name, n_cubins=len(archs), ptx_arch=newest,
            ptx_shared=int(kernels[newest].metadata.shared), threads=32 * config.num_warps, params=params,
            args=", ".join([f"&{n}" for n in config.signature] + ["&global_scratch", "&profile_scratch"]),
            gx=gx, gy=gy, gz=gz))
    defines = "".join(f"/* from m2f.plugins.{op} */\n#define {name} ({float(value).hex()}f)\n"
                      for name, value in getattr(OPS[op], "AOT_DEFINES", {}).items())
    header = _template("launcher.h.in").substitute(info, guard=f"M2F_{op.upper()}_H", defines=defines,
                                                   declarations="\n\n".join(decls))
    source = _template("launcher.c.in").substitute(info, header=f"m2f_{op}.h", bodies="".join(bodies))
    return header, source


def _c_array(values) -> str:
    return "{" + ", ".join(map(str, values)) + "}"


def contracts_header() -> str:
    """The C header of the ops' contracts (names, namespace, versions, attribute names, input ranks, head-dim
    limit), so that the C++ plugins and the Python side read one source: the ``contract`` modules."""
    msda, ma = msda_contract, ma_contract
    if msda.PLUGIN_NAMESPACE != ma.PLUGIN_NAMESPACE:
        raise M2FError("the two plugins must share one namespace (one library registers both)")
    defines = {
        "M2F_PLUGIN_NAMESPACE": f'"{msda.PLUGIN_NAMESPACE}"',
        "M2F_MSDA_NAME": f'"{msda.PLUGIN_NAME}"', "M2F_MSDA_VERSION": f'"{msda.PLUGIN_VERSION}"',
        "M2F_MSDA_FUSED_FIELD": f'"{msda.FUSED_ATTRIBUTE}"',
        "M2F_MSDA_PLAIN_INPUTS": len(msda.PLAIN_RANKS), "M2F_MSDA_PLAIN_RANKS": _c_array(msda.PLAIN_RANKS),
        "M2F_MSDA_FUSED_INPUTS": len(msda.FUSED_RANKS), "M2F_MSDA_FUSED_RANKS": _c_array(msda.FUSED_RANKS),
        "M2F_MSDA_MAX_HEAD_DIM": msda.MAX_HEAD_DIM,
        "M2F_MASKED_ATTENTION_NAME": f'"{ma.PLUGIN_NAME}"', "M2F_MASKED_ATTENTION_VERSION": f'"{ma.PLUGIN_VERSION}"',
        "M2F_MASKED_ATTENTION_INPUTS": len(ma.RANKS), "M2F_MASKED_ATTENTION_RANKS": _c_array(ma.RANKS),
        "M2F_MASKED_ATTENTION_MAX_HEAD_DIM": ma.MAX_HEAD_DIM,
    }
    lines = "".join(f"#define {name} {value}\n" for name, value in defines.items())
    return ("/* The m2f ops' contracts, generated by m2f plugins build-kernels from plugins/ms_deform_attn/contract.py "
            "and\n   plugins/masked_attention/contract.py; do not edit. */\n"
            f"#ifndef M2F_OP_CONTRACTS_H\n#define M2F_OP_CONTRACTS_H\n\n{lines}\n#endif\n")


def check_archs(archs) -> list[int]:
    """ArgumentError naming any architecture the build cannot serve, with the supported ones."""
    bad = [a for a in archs if a not in SUPPORTED_ARCHS]
    if bad or not archs:
        known = ", ".join(f"{a} ({gpu})" for a, gpu in SUPPORTED_ARCHS.items())
        raise ArgumentError(f"{', '.join(f'sm_{a}' for a in bad) or 'no architecture'} is not a GPU architecture "
                            f"this build supports; choose from {known}")
    return list(archs)


def build_kernels(out: str | Path, archs=DEFAULT_ARCHS, ops=tuple(OPS), progress=lambda msg: None) -> dict:
    """Compile every configuration of ``ops`` for every architecture in ``archs`` into ``out``; returns the
    manifest (also written to out/manifest.json)."""
    require("triton", "kernels", "the AOT kernel build")
    import triton

    out = Path(out)
    archs = check_archs(archs)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise M2FError(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    if interpreting():
        return _build_in_child(out, archs, ops)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"triton": triton.__version__, "archs": list(archs), "kernels": []}
    for op in ops:
        compiled = []
        for config in OPS[op].aot_kernels():
            kernels = {}
            for arch in archs:
                progress(f"sm_{arch} {config.name}")
                try:
                    kernels[arch] = compile_kernel(config, arch)
                except Exception as e:  # triton raises many types; say which config failed and why
                    raise M2FError(f"compiling {config.name} for sm_{arch} failed: {e}") from None
                arch_dir = out / f"sm_{arch}"
                arch_dir.mkdir(parents=True, exist_ok=True)
                (arch_dir / f"{config.name}.cubin").write_bytes(kernels[arch].asm["cubin"])
                (arch_dir / f"{config.name}.ptx").write_text(kernels[arch].asm["ptx"])
                manifest["kernels"].append({"arch": arch, "op": op, "name": config.name,
                                            "function": f"m2f_{config.name}", "constexprs": config.constexprs,
                                            "num_warps": config.num_warps,
                                            "shared_bytes": int(kernels[arch].metadata.shared),
                                            "cubin_bytes": len(kernels[arch].asm["cubin"])})
            compiled.append((config, kernels))
        header, source = launcher_source(op, compiled)
        (out / f"m2f_{op}.h").write_text(header)
        (out / f"m2f_{op}.c").write_text(source)
    for name in RUNTIME_FILES:
        shutil.copyfile(COMMON / name, out / name)
    (out / CONTRACTS_HEADER).write_text(contracts_header())
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
