"""The ``m2f`` command line: one thin module per subcommand (``HELP``, ``add_arguments``, ``run``), the argument
groups they share (``args.py``) and the entry point (``main.py``). Stdlib only until a subcommand runs; the work
itself is the library's (m2f.model, m2f.export, m2f.calib, m2f.runtime, m2f.validate, m2f.serving, m2f.train).
Nothing outside this folder imports it.
"""
from .main import main

__all__ = ["main"]
