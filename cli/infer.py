"""``m2f infer MODEL INPUT… -o OUT``: images, folders, videos and cameras through the torch-free runtime.

One input that cannot be read costs only itself: it is skipped with one line on stderr and listed under "failed" in
results.json, the rest is processed, and the exit status is 3 (0 when every input worked, 2 when none did).
Ctrl-C and SIGTERM finish the current image or frame, then write the summaries (exit 130 / 143).
"""
from __future__ import annotations

import sys

from m2f.contract import TASKS

from . import args as shared
from .signals import StopSignals

HELP = "run an exported model (.onnx or TensorRT engine) on images, folders, videos or cameras"
EXIT_SOME_FAILED = 3


def add_arguments(p) -> None:
    p.add_argument("model", help=".onnx from 'm2f export', or a TensorRT engine with its .json sidecar")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, video files, or camera indices (0, 1…)")
    p.add_argument("-o", "--output", required=True, help="folder for the results")
    p.add_argument("--task", action="append", choices=TASKS,
                   help="only these tasks (repeatable; default: all the model produces)")
    p.add_argument("--threshold", type=shared.probability, help="object-mask threshold (default: the model's)")
    p.add_argument("--overlap-threshold", type=shared.probability, help="panoptic overlap threshold (default: "
                   "the model's)")
    p.add_argument("--score-threshold", type=shared.probability, default=0.5,
                   help="instances drawn in overlays and counted on the console (default 0.5); instances.json keeps "
                        "the reference's whole top-k, as COCO evaluation needs")
    shared.add_runtime(p)
    shared.add_classes(p)
    p.add_argument("--drop", choices=("none", "latest"),
                   help="video/camera frame policy when inference is late (default: latest for cameras, none for "
                        "files)")
    p.add_argument("--max-frames", type=shared.positive_int, help="stop a video or camera after this many frames")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay images")
    p.add_argument("--show", action="store_true", help="show overlays in a window while running (needs a display "
                                                       "and OpenCV with GUI support)")


def _open_window():
    """A window for --show, or one sentence saying what is missing."""
    from m2f.errors import ArgumentError, require

    cv2 = require("cv2", "runtime", "--show")
    try:
        cv2.namedWindow("m2f")
    except cv2.error:
        raise ArgumentError("--show needs OpenCV with GUI support and a display; the installed OpenCV has none "
                            "(opencv-python-headless): pip install opencv-python, or drop --show") from None
    return cv2


def _process(items, predictor, writer, meter, args, stop, report) -> None:
    """Run every item; a failing input is recorded and reported, never fatal."""
    from m2f.runtime.image_io import read_image
    from m2f.runtime.stream import frames

    gui = _open_window() if args.show else None

    def one(image, name, image_id, source):
        result = predictor.predict(image)
        entry = writer.add(image, result, name, image_id, source)
        meter.add(result.timings)
        if gui is not None:
            from m2f.runtime.formats import overlay

            task = "panoptic" if result.panoptic is not None else "instance" if result.instances else "semantic"
            shown = overlay(image, result, predictor.names, task, args.score_threshold)
            gui.imshow("m2f", gui.cvtColor(shown, gui.COLOR_RGB2BGR))
            if gui.waitKey(1) & 0xFF == ord("q"):
                stop.code = 130
        return entry

    for item in items:
        if stop.code:
            break
        label = str(item.source) if item.kind != "camera" else f"camera {item.source}"
        try:
            if item.kind == "image":
                entry = one(read_image(item.source), item.name, item.image_id, str(item.source))
                print(f"  {item.source.name}: {entry['segments']} segments, {entry['confident_instances']} "
                      f"instances scoring >= {args.score_threshold}")
                continue
            (writer.out / item.name).mkdir(exist_ok=True)
            drop = args.drop or ("latest" if item.kind == "camera" else "none")
            last, dropped, processed = -1, 0, 0
            for frame in frames(str(item.source) if item.kind == "video" else item.source, drop=drop):
                dropped += frame.index - last - 1
                last = frame.index
                one(frame.image, f"{item.name}/frame_{frame.index:06d}", len(writer.images) + 1,
                    f"{label}#{frame.index}")
                processed += 1
                if processed % 25 == 0:
                    print(f"  {item.name}: {meter.line(dropped)}")
                if stop.code or (args.max_frames and processed >= args.max_frames):
                    break
            print(f"  {item.name}: {meter.line(dropped)}")
        except Exception as e:  # one bad input costs only itself (corrupt file, codec, a backend error on it)
            writer.fail(label, e)
            report(label, e)


def run(args) -> int:
    from m2f.errors import M2FError
    from m2f.runtime.batch import RunWriter, expand_inputs
    from m2f.runtime.stream import RateMeter

    out = shared.output_folder(args.output)
    items = expand_inputs(args.inputs, exclude=out)
    predictor = shared.open_predictor(args)
    writer = RunWriter(out, predictor.names, predictor.category_ids, overlays=not args.no_overlay,
                       score_threshold=args.score_threshold)

    def report(label, error):
        if len(items) > 1:
            print(f"m2f infer: skipped {label}: {error}", file=sys.stderr)

    stop, meter = StopSignals(), RateMeter()
    print(f"model {args.model}: tasks {', '.join(predictor.tasks)}; {len(items)} input(s); writing to {out}/")
    try:
        _process(items, predictor, writer, meter, args, stop, report)
    finally:
        stop.restore()
        written = writer.write_summaries({"model": str(args.model), "tasks": predictor.tasks, "timing": meter.line(),
                                          "interrupted": bool(stop.code)})
        predictor.close()
    if not writer.images and writer.failures and not stop.code:
        first = writer.failures[0]
        raise M2FError(first["error"] if len(items) == 1 else
                       f"none of the {len(items)} inputs could be processed (first: {first['input']}: "
                       f"{first['error']})" + ("" if written else f"; the earlier results in {out} were kept"))
    failed = f"; {len(writer.failures)} input(s) failed, listed in results.json" if writer.failures else ""
    print(f"{len(writer.images)} images/frames done{failed}; see {out}/results.json, {out}/instances.json and the "
          f"per-image files" + (" (interrupted: everything done so far is written)" if stop.code else "")
          + ("" if written else f" (nothing succeeded: the earlier summaries in {out} were kept)"))
    return stop.code or (EXIT_SOME_FAILED if writer.failures else 0)
