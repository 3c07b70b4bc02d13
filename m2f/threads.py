"""How many CPU threads m2f's CPU work uses (torch and ONNX Runtime), chosen deliberately (stdlib only).

Both libraries default to one thread per core. When another process keeps a core busy, their threads wait on each
other at every parallel region: on a 2-core machine with one core taken, ``m2f demo`` ran 4-6x slower with the
default than with one thread. The default here is the cores this process may use minus those the rest of the
machine keeps busy (its 1-minute load average), at least one; ``--threads N`` (or ``M2F_THREADS``) overrides it.
"""
from __future__ import annotations

import os
import sys

ENV = "M2F_THREADS"


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """$M2F_THREADS if set, else the available CPUs less the machine's current load, at least 1."""
    if os.environ.get(ENV, "").isdigit() and int(os.environ[ENV]) > 0:
        return int(os.environ[ENV])
    cpus = available_cpus()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def use_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (when torch is imported) to ``threads`` or the default; returns the count, for
    ONNX Runtime sessions and for messages."""
    count = threads or default_threads()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    return count
