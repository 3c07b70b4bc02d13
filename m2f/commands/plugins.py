"""``m2f plugins build-kernels``: compile the Triton kernels ahead of time (cubin + PTX + C launchers), no GPU needed."""
HELP = "build the custom-op kernels ahead of time for chosen GPU architectures (no GPU needed)"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build-kernels", help="compile every kernel configuration to cubin + PTX and C launchers")
    build.add_argument("--arch", default="87,80,86,89,90",
                       help="comma-separated SM versions, e.g. 87 (Jetson Orin), 80/86/89/90 (A100, RTX 30xx, L4/RTX "
                            "40xx, H100); default: %(default)s")
    build.add_argument("--ops", default="ms_deform_attn,masked_attention", help="which ops (default: both)")
    build.add_argument("-o", "--output", required=True, help="folder for sm_XX/ subfolders and manifest.json")


def _archs(text: str) -> list[int]:
    from m2f.errors import ArgumentError

    from m2f.plugins.aot import SUPPORTED_ARCHS

    try:
        archs = [int(a.strip().removeprefix("sm_").removeprefix("sm")) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ArgumentError(f"--arch {text!r} is not a comma-separated list of SM versions such as 87,90") from None
    bad = [a for a in archs if a not in SUPPORTED_ARCHS]
    if bad or not archs:
        known = ", ".join(f"{a} ({gpu})" for a, gpu in SUPPORTED_ARCHS.items())
        raise ArgumentError(f"--arch {text!r}: {', '.join(f'sm_{a}' for a in bad) or 'no architecture'} is not a "
                            f"GPU architecture this build supports; choose from {known}")
    return archs


def run(args) -> int:
    import time

    from m2f.errors import require

    require("triton", "kernels", "m2f plugins build-kernels")
    from m2f.plugins.aot import build_kernels

    archs = _archs(args.arch)
    t0 = time.perf_counter()
    manifest = build_kernels(args.output, archs, tuple(o.strip() for o in args.ops.split(",") if o.strip()),
                             progress=lambda msg: print(f"compiling {msg}", flush=True))
    print(f"built {len(manifest['kernels'])} kernels for sm_{', sm_'.join(map(str, archs))} in "
          f"{time.perf_counter() - t0:.0f} s (triton {manifest['triton']}) -> {args.output}/ "
          f"(launchers: sm_XX/m2f_<op>_smXX.h/.c, link with -lcuda)")
    return 0
