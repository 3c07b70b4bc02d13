"""``m2f doctor [--plugins LIB] [--engine ENGINE]``: what this machine has for running engines, with a fix for each
mismatch (m2f.runtime.doctor). Works, and says what is missing, on a machine without a GPU or TensorRT."""
from __future__ import annotations

HELP = "check this machine for TensorRT, the CUDA driver, cuda-python and the GPU; does a plugin library or engine fit?"
EXIT_PROBLEMS = 1


def add_arguments(p) -> None:
    p.add_argument("--plugins", action="append", default=[], metavar="LIB",
                   help="also check this plugin library (repeatable): TensorRT major and GPU architectures")
    p.add_argument("--engine", action="append", default=[], metavar="ENGINE",
                   help="also check this engine (repeatable), from its <engine>.json sidecar")


def run(args) -> int:
    from m2f.runtime.doctor import diagnose

    findings = diagnose(args.plugins, args.engine)
    for finding in findings:
        print(finding.line())
    problems = [f for f in findings if not f.ok]
    print(f"{len(problems)} thing(s) to fix" if problems else "everything m2f needs to run engines is here")
    return EXIT_PROBLEMS if problems else 0
