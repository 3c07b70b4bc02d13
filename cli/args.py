"""Argument types and groups shared by the subcommands (stdlib only; imported by ``m2f --help``).

Types reject bad values while arguments are parsed, before any slow work: counts must be positive, thresholds
within [0, 1]. Groups keep one spelling per option across commands (trtexec/polygraphy names where they overlap).
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from m2f.errors import ArgumentError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count (1 or more)")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def number_in(low: float, high: float, kind: type = float, low_open: bool = False):
    """An argparse type: an int or float (``kind``) within [low, high] (``low_open``: above ``low``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        inside = (value > low if low_open else value >= low) and value <= high  # also refuses nan
        if not inside:
            raise argparse.ArgumentTypeError(f"{text} is outside {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    parse.__name__ = f"{kind.__name__}_in_{low:g}_{high:g}"
    return parse


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds
# the largest canvas side a static export or a --size takes: 4x a 2048-wide Cityscapes frame; beyond it the graph's
# buffers alone run to tens of GB and an export fails in the allocator minutes later
MAX_CANVAS_SIDE = 8192


def positive_float(text: str) -> float:
    """A finite number above 0 (seconds, rates, scales)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def tcp_port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def model_name(text: str) -> str:
    """A served model's name: one path component by Triton's rules (m2f.serving.check_model_name)."""
    from m2f.serving import check_model_name

    try:
        return check_model_name(text)
    except ArgumentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def existing_file(text: str) -> str:
    """A path that is a file now (plugin libraries, configs): checked before any model is loaded."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} {'is a folder, not a file' if path.is_dir() else 'does not exist'}")
    return text


def tensorrt_version(text: str) -> str:
    """"10.3", "10.16.1", "11.1": a TensorRT release from 10.0 on."""
    parts = text.split(".")
    if not (1 < len(parts) <= 4 and all(p.isdigit() for p in parts)) or int(parts[0]) < 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TensorRT version from 10.0 on (e.g. 10.3 or 10.16)")
    return text


def add_plugins(p: argparse.ArgumentParser) -> None:
    """How the two special ops are exported (m2f.plugins.lowering)."""
    from m2f.plugins.lowering import DEFAULT_OPTIONS, EXPORT_FLAVORS

    group = p.add_argument_group("plugins")
    group.add_argument("--flavor", choices=EXPORT_FLAVORS, default="portable",
                       help="portable: standard ONNX ops only (default); m2f: one node per op for m2f's TensorRT "
                            "plugins (m2f plugins build); trt-builtin: deformable attention as TensorRT's own "
                            "MultiscaleDeformableAttnPlugin_TRT (see README 'Op flavors')")
    group.add_argument("--trt-version", type=tensorrt_version, default=DEFAULT_OPTIONS["tensorrt_version"],
                       help="the TensorRT the graph will be built with; picks the trt-builtin plugin's version "
                            f"(default {DEFAULT_OPTIONS['tensorrt_version']}, JetPack 6)")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch / ONNX Runtime (default: the free cores, see README 'CPU threads'; "
                        "also $M2F_THREADS)")


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    """The checkpoint positional and how to read it."""
    p.add_argument("checkpoint", help="detectron2 .pkl/.pth, .safetensors, or a HuggingFace model directory")
    p.add_argument("--preset", help="model-zoo preset of the checkpoint (`m2f presets` lists them)")
    p.add_argument("--config", help="detectron2 YAML config of the checkpoint (its _BASE_ chain is followed)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary Python objects in the checkpoint (only for files you trust)")


def add_runtime(p: argparse.ArgumentParser) -> None:
    """How an exported model runs: backend options shared by infer, validate, bench and serve."""
    p.add_argument("--providers", help="ONNX Runtime providers, comma-separated (e.g. CUDAExecutionProvider)")
    p.add_argument("--plugins", type=existing_file, help="TensorRT plugin library (.so); also $M2F_PLUGINS")
    p.add_argument("--resize", choices=("pil", "cv2"), default="pil",
                   help="pil: exactly the reference (default); cv2: faster, slightly different (see README)")
    add_threads(p)


def providers(args) -> list[str] | None:
    return args.providers.split(",") if args.providers else None


def host_options(args, **fixed):
    """m2f.runtime.HostOptions from whichever host-step flags the command has (``fixed`` overrides them)."""
    from m2f.runtime.host import HostOptions

    things, stuff = class_lists(args) if hasattr(args, "thing_classes") else ((), ())
    given = {"tasks": tuple(args.task) if getattr(args, "task", None) else None,
             "resize": getattr(args, "resize", "pil"), "threshold": getattr(args, "threshold", None),
             "overlap_threshold": getattr(args, "overlap_threshold", None), "thing_classes": things,
             "stuff_classes": stuff}
    return HostOptions(**{**given, **fixed})


def open_predictor(args, model: str | None = None, options=None, threads: int | None = None):
    """The model (``args.model`` by default) as a Predictor with the runtime flags, or a served model's
    RemotePredictor for an http:// or grpc:// URL."""
    from m2f.serving.client import is_server_url

    model = model or args.model
    options = options or host_options(args)
    if is_server_url(str(model)):
        from m2f.serving.client import RemotePredictor

        return RemotePredictor(str(model), options)
    from m2f.runtime import Predictor

    return Predictor(model, options, providers=providers(args), plugins=getattr(args, "plugins", None),
                     threads=threads or getattr(args, "threads", None))


def output_folder(path: str) -> Path:
    """Create the output folder (and its parents); one sentence when that is impossible."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"the output folder {out} is an existing file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArgumentError(f"cannot create the output folder {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ArgumentError(f"the output folder {out} is not writable; give another -o")
    return out


def add_precision(p: argparse.ArgumentParser, choices: tuple[str, ...] | None, default: str | None = None,
                  required: bool = False) -> None:
    """The one precision decision, spelled the same in export, convert and build: ``--precision`` (``choices``;
    None leaves the flag out, for a command whose precision is fixed) and the images it is measured or calibrated
    on (``precision_options``)."""
    from m2f.calib.options import CALIBRATION_IMAGES, DEFAULT_FP16_DATA, SWEEP_IMAGES
    from m2f.calib.ranges import DEFAULT_PERCENTILE, METHODS

    group = p.add_argument_group("precision (written into the ONNX: fp16 with measured fp32 islands, int8 as "
                                 "calibrated Q/DQ, best = both; docs/precision.md)")
    if choices:
        group.add_argument("--precision", choices=choices, default=default, required=required,
                           help="fp16: every block fp16 except the fp32 islands a sensitivity sweep keeps; int8: "
                                "explicit Q/DQ from calibration on --data; best: int8 on the blocks where it measures "
                                "safe, fp16 elsewhere (needs an --opset 19 export)" + (f" (default {default})"
                                                                                        if default else ""))
    group.add_argument("--data", help=f"images to measure and calibrate on: a folder, a COCO json, or "
                                      f"synthetic[:N[:SEED]] (int8/best: required; fp16: default {DEFAULT_FP16_DATA})")
    group.add_argument("--images", type=positive_int,
                       help=f"how many of them, chosen at random with --seed when there are more (default: "
                            f"{CALIBRATION_IMAGES} to calibrate, {SWEEP_IMAGES} per sensitivity sweep)")
    group.add_argument("--seed", type=non_negative_int, default=0, help="seed of that choice (default 0)")
    group.add_argument("--method", choices=METHODS, default="minmax",
                       help="int8 range per activation tensor: the largest |x| (default), a percentile of |x|, or "
                            "TensorRT's entropy (KL) method")
    group.add_argument("--percentile", type=number_in(50, 100, low_open=True), default=DEFAULT_PERCENTILE,
                       help=f"for --method percentile, in (50, 100] (default {DEFAULT_PERCENTILE})")
    group.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="keep nodes whose name matches this fnmatch pattern in float (repeatable), e.g. "
                            "'*/predictor/*'")
    group.add_argument("--calib-cache", help="calibration cache: the statistics (.npz; default beside the input "
                                             "model), or TensorRT's calibrator cache with m2f build --builder-flags")


def precision_options(args):
    """m2f.calib.options.PrecisionOptions from ``add_precision``'s flags (and ``--threads``)."""
    from m2f.calib.options import PrecisionOptions

    return PrecisionOptions(data=args.data, images=args.images, seed=args.seed, method=args.method,
                            percentile=args.percentile, exclude=tuple(args.exclude),
                            cache=Path(args.calib_cache) if args.calib_cache else None,
                            threads=getattr(args, "threads", None))


def print_conversion(summary) -> None:
    """What a precision conversion did (its summary's lines) and the next step."""
    print("\n".join(summary.lines()))
    print(f"next: m2f validate CKPT {summary.path} --data ...   (accuracy against fp32 / PyTorch)")


def add_classes(p: argparse.ArgumentParser) -> None:
    """Which classes are things (countable objects: instances, one panoptic segment each) and which are stuff."""
    group = p.add_argument_group("classes (default: the config's split; every class a thing when the dataset is "
                                 "not one m2f knows)")
    group.add_argument("--thing-classes", action="append", default=[], metavar="NAMES",
                       help="comma-separated class names or ids that are things (exactly these)")
    group.add_argument("--stuff-classes", action="append", default=[], metavar="NAMES",
                       help="comma-separated class names or ids that are stuff (amorphous regions)")


def class_lists(args) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(thing classes, stuff classes) from ``add_classes``' options."""
    split = lambda values: tuple(v.strip() for text in values for v in text.split(",") if v.strip())  # noqa: E731
    return split(args.thing_classes), split(args.stuff_classes)
