"""m2f.threads: the default leaves the cores other processes keep busy, and the options win."""
import os

import pytest

from m2f import threads


def test_default_leaves_busy_cores(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    for load, expected in ((0.0, 4), (1.2, 3), (3.6, 1), (9.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.default_threads() == expected, load


def test_environment_and_argument_win(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setenv(threads.ENV, "3")
    try:
        assert threads.default_threads() == 3
        assert threads.use_threads() == 3 and torch.get_num_threads() == 3
        assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
