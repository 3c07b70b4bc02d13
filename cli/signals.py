"""Ctrl-C and SIGTERM for long-running commands (stdlib only): finish the work in hand, then stop."""
from __future__ import annotations

import signal
import threading

# the exit status a command returns after each signal, as a shell reports a process killed by it
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopSignals:
    """Replaces the SIGINT/SIGTERM handlers until ``restore()``: a signal sets ``code`` (130 / 143) and ``event``
    instead of interrupting. ``m2f infer`` checks ``code`` between images; ``m2f serve`` waits on ``event``."""

    def __init__(self):
        self.code = 0
        self.event = threading.Event()
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def _handle(self, signum, _frame):
        self.code = STOP_SIGNALS[signum]
        self.event.set()

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
