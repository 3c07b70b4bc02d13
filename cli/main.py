"""The ``m2f`` command line. Subcommands live in ``m2f.cli.<name>``; each module defines ``HELP``,
``add_arguments(parser)`` (stdlib only) and ``run(args)`` (which imports its own heavy dependencies), so
``m2f --help`` works with nothing but numpy installed. Commands never import each other: what two share is an
argument group in ``args.py`` or a function of the library."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import warnings

from m2f import __version__
from m2f.errors import M2FError, M2FWarning
from m2f.threads import env_threads

EXIT_TERMINATED = 143  # as a shell reports a process ended by SIGTERM


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(BaseException):
    """SIGTERM while a command runs: unwinds like Ctrl-C, so every temporary file is removed on the way out."""


_TERMINATED = threading.Event()


def _terminate(signum, frame):
    _TERMINATED.set()  # a library calling back into Python from C++ (torch's tracer) may rewrap the exception
    raise Terminated


# name -> module under m2f.cli. Order is the order shown in --help.
COMMANDS = ("demo", "export", "convert", "calibrate", "build", "infer", "validate", "bench", "inspect", "plugins",
            "doctor", "triton-repo", "serve", "presets", "synthetic", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="m2f", description="Mask2Former checkpoints to ONNX / TensorRT, and a torch-free runtime.")
    parser.add_argument("--version", action="version", version=f"m2f {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"m2f.cli.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _notes(command: str):
    """warnings.showwarning replacement: m2f's own warnings as one 'note:' line each, others as Python prints them."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, M2FWarning):
            print(f"m2f {command}: note: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    on_main_thread = threading.current_thread() is threading.main_thread()
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    with warnings.catch_warnings():
        warnings.showwarning = _notes(args.command)
        try:
            env_threads()  # a bad M2F_THREADS is refused before any work
            return args._run(args) or 0
        except (Terminated, Exception) as e:
            if _TERMINATED.is_set():  # whatever the signal's exception became on its way out
                print(f"m2f {args.command}: terminated (SIGTERM)", file=sys.stderr)
                return EXIT_TERMINATED
            if not isinstance(e, M2FError):
                raise
            print(f"m2f {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"m2f {args.command}: interrupted", file=sys.stderr)
            return 130
        finally:
            if previous is not None:  # None: a handler installed outside Python, left as it was
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
