"""``m2f plugins build-kernels`` (the AOT Triton kernels) and ``m2f plugins build`` (the TensorRT plugin library);
neither needs a GPU."""
from . import args as shared

HELP = "build the custom-op kernels and the TensorRT plugin library for chosen GPU architectures (no GPU needed)"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    kernels = sub.add_parser("build-kernels", help="compile every kernel configuration to cubin + PTX and C launchers")
    library = sub.add_parser("build", help="the kernels, then libm2f_plugins.so (TensorRT IPluginV3 plugins)")
    for parser in (kernels, library):
        parser.add_argument("--arch", default="87,80,86,89,90",
                            help="comma-separated SM versions, e.g. 87 (Jetson Orin), 80/86/89/90 (A100, RTX 30xx, "
                                 "L4/RTX 40xx, H100); default: %(default)s")
        parser.add_argument("-o", "--output", required=True, help="output folder")
    kernels.add_argument("--ops", default="ms_deform_attn,masked_attention", help="which ops (default: both)")
    library.add_argument("--tensorrt-include", help="TensorRT include folder (default: $TensorRT_ROOT/include or "
                                                    "the system's)")
    library.add_argument("--no-cmake", action="store_true", help="call the compiler directly even if CMake is here")


def _archs(text: str) -> list[int]:
    from m2f.errors import ArgumentError
    from m2f.plugins.aot import check_archs

    try:
        archs = [int(a.strip().removeprefix("sm_").removeprefix("sm")) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ArgumentError(f"--arch {text!r} is not a comma-separated list of SM versions such as 87,90") from None
    try:
        return check_archs(archs)
    except ArgumentError as e:
        raise ArgumentError(f"--arch {text!r}: {e}") from None


def run(args) -> int:
    import time

    from m2f.errors import require

    require("triton", "kernels", f"m2f plugins {args.action}")
    archs = _archs(args.arch)
    shared.output_folder(args.output)
    t0 = time.perf_counter()
    progress = lambda msg: print(f"  {msg}", flush=True)  # noqa: E731
    if args.action == "build-kernels":
        from m2f.plugins.aot import build_kernels

        manifest = build_kernels(args.output, archs, tuple(o.strip() for o in args.ops.split(",") if o.strip()),
                                 progress=progress)
        print(f"built {len(manifest['kernels'])} kernels for sm_{', sm_'.join(map(str, archs))} in "
              f"{time.perf_counter() - t0:.0f} s (triton {manifest['triton']}) -> {args.output}/ "
              f"(launchers m2f_<op>.h/.c with their runtime m2f_kernels.h/.c; build with -ldl -lpthread)")
        return 0
    from m2f.plugins.build import build_library, build_info

    library = build_library(args.output, archs, args.tensorrt_include, use_cmake=False if args.no_cmake else None,
                            progress=progress)
    info = build_info(library)
    version = ".".join(map(str, info["tensorrt"]))
    print(f"built {library} in {time.perf_counter() - t0:.0f} s (TensorRT {version} headers, sm_"
          f"{', sm_'.join(map(str, archs))} + PTX). Load it with:\n"
          f"  m2f build model.onnx -o model.engine --plugins {library}   "
          f"(and m2f infer ...; or M2F_PLUGINS={library})\n"
          f"  trtexec --onnx=model.onnx --dynamicPlugins={library}   (or --staticPlugins)\n"
          f"  polygraphy run model.onnx --trt --plugins {library}\n"
          f"  tritonserver --backend-config=tensorrt,plugins={library} ...\n"
          f"(docs/tensorrt.md: how each host loads it)")
    return 0
