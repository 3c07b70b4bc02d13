"""How many CPU threads m2f's CPU work uses (torch and ONNX Runtime), chosen deliberately (stdlib only).

Both libraries default to one thread per core. When another process keeps a core busy, their threads wait on each
other at every parallel region: on a 2-core machine with one core taken, ``m2f demo`` ran 4-6x slower with the
default than with one thread. The default here is the cores this process may use minus those the rest of the
machine keeps busy (its 1-minute load average), at least one; ``--threads N`` (or ``M2F_THREADS``) overrides it,
up to MAX_PER_CPU threads per available CPU (more only makes the threads wait on each other: 100000 threads ran for
minutes on a 1x1 image and crashed the demo), with a note when a request is capped.
"""
from __future__ import annotations

import os
import sys
import warnings

from m2f.errors import ArgumentError, M2FWarning

ENV = "M2F_THREADS"
MAX_PER_CPU = 4


def allowed_cpus() -> list[int] | None:
    """The CPUs this process may run on, sorted; None where the platform cannot say (not Linux)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def available_cpus() -> int:
    allowed = allowed_cpus()
    return len(allowed) if allowed is not None else os.cpu_count() or 1


def capped(threads: int, source: str) -> int:
    """``threads`` (from ``source``, for the note), at most MAX_PER_CPU per available CPU."""
    limit = MAX_PER_CPU * available_cpus()
    if threads > limit:
        warnings.warn(f"{source} asks for {threads} threads; using {limit} ({MAX_PER_CPU} per available CPU): "
                      f"more only wait on each other", M2FWarning, stacklevel=3)
        return limit
    return threads


def env_threads() -> int | None:
    """$M2F_THREADS as a count (None when unset); one sentence when it is not a positive whole number."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ArgumentError(f"{ENV}={text!r} is not a positive whole number of threads; set it to e.g. 2, or unset "
                            f"it for the default")
    return capped(int(text), ENV)


def default_threads() -> int:
    """$M2F_THREADS if set, else the available CPUs less the machine's current load, at least 1."""
    from_env = env_threads()
    if from_env is not None:
        return from_env
    cpus = available_cpus()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def use_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (when torch is imported) to ``threads`` or the default; returns the count, for
    ONNX Runtime sessions and for messages."""
    count = capped(threads, "--threads") if threads else default_threads()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    return count
