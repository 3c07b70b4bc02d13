"""What the Triton kernels of the op files share: the optional import, and picking how a kernel runs.

On CUDA tensors a kernel runs compiled (``triton.jit``). With ``TRITON_INTERPRET=1`` set before Triton is imported,
every kernel runs in Triton's interpreter instead: the very same kernel source executed with numpy on CPU tensors,
which is how CI checks the kernels without a GPU.
"""
from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # the kernels are optional: the model and the references never need them
    triton = tl = None

from m2f.errors import M2FError


def jit(fn):
    """``triton.jit`` when Triton is installed; otherwise the plain function (it is never launched then)."""
    return triton.jit(fn) if triton is not None else fn


def interpreting() -> bool:
    """Whether Triton was imported with TRITON_INTERPRET=1 (kernels then run on CPU tensors, through numpy)."""
    return triton is not None and bool(triton.knobs.runtime.interpret)


def launchable(kernel, device_type: str):
    """The kernel, checked to be runnable on ``device_type``: compiled kernels need CUDA tensors; CPU tensors need
    the interpreter, which Triton only switches on when TRITON_INTERPRET=1 is set before it is imported."""
    if device_type != "cuda" and not interpreting():
        raise M2FError("the Triton kernels run on CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 "
                       "in the environment before starting Python (or pass CUDA tensors)")
    return kernel


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


class AotKernel:
    """One kernel configuration for the ahead-of-time build: the jitted kernel, its argument types (Triton
    signature strings such as "*fp16", "i32", "fp32"), the constexpr values, the C launcher's extra size
    arguments and its grid as C expressions over the argument names."""

    def __init__(self, name: str, kernel, signature: dict[str, str], constexprs: dict, grid: tuple[str, str, str],
                 extra_args: tuple[str, ...] = (), num_warps: int = 4, num_stages: int = 2):
        self.name, self.kernel, self.signature, self.constexprs = name, kernel, signature, constexprs
        self.grid, self.extra_args, self.num_warps, self.num_stages = grid, extra_args, num_warps, num_stages
