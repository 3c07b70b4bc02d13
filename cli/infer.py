"""``m2f infer MODEL INPUT… -o OUT``: images, folders, videos and cameras through the torch-free runtime.

One input that cannot be read costs only itself: it is skipped with one line on stderr and listed under "failed" in
results.json, the rest is processed, and the exit status is 3 (0 when every input worked, 2 when none did); a video
that ends before the frames it declares is such a failure, after its frames are written. Results are streamed to
disk as they come, so a stream of any length runs in bounded memory; an output folder that fills up (or turns
read-only) stops the run, which keeps and summarises what it finished (exit 4). One run at a time per output folder.
Reading and pre-processing, inference and post-processing run overlapped (m2f.runtime.pipeline); results are
written in input order. Ctrl-C and SIGTERM stop reading, finish the images and frames already read, then write the
summaries (exit 130 / 143).
"""
from __future__ import annotations

import contextlib
import sys

from m2f.contract import TASKS

from . import args as shared
from .signals import StopSignals

HELP = "run an exported model (.onnx or TensorRT engine) on images, folders, videos or cameras"
EXIT_SOME_FAILED = 3
EXIT_OUTPUT_FULL = 4


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
    p.add_argument("--pipeline-depth", type=shared.positive_int, default=2, metavar="N",
                   help="images waiting between two pipeline stages (reading + pre-processing, inference, "
                        "post-processing run on threads; default 2)")
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


def _label(item) -> str:
    return str(item.source) if item.kind != "camera" else f"camera {item.source}"


def _source(items, writer, args):
    """(tag, image) for every image and video or camera frame, in order; tags are (input item, frame index or
    None). Image files are decoded in the pipeline's first stage; a video that cannot be opened or read is an Item
    carrying that error."""
    from m2f.runtime.pipeline import Item
    from m2f.runtime.stream import frames

    for item in items:
        if item.kind == "image":
            yield (item, None), item.source
            continue
        try:
            (writer.out / item.name).mkdir(exist_ok=True)
            drop = args.drop or ("latest" if item.kind == "camera" else "none")
            for count, frame in enumerate(frames(str(item.source) if item.kind == "video" else item.source,
                                                 drop=drop), start=1):
                yield (item, frame.index), frame.image
                if args.max_frames and count >= args.max_frames:
                    break
        except Exception as e:  # one bad input costs only itself (corrupt file, codec)
            yield Item((item, None), None, error=e)


def _process(items, predictor, writer, meter, args, stop, report) -> None:
    """Run every item through the pipelined runtime; a failing input is recorded and reported, never fatal. An
    output folder that takes no more files ends the run: what is in flight is dropped, what is written is kept."""
    from m2f.runtime.batch import OutputError
    from m2f.runtime.pipeline import Pipeline

    gui = _open_window() if args.show else None
    pipeline = Pipeline(predictor, depth=args.pipeline_depth)
    video = _VideoCounters()
    with contextlib.closing(pipeline.stream(_source(items, writer, args))) as results:  # closing joins the threads
        for done in results:
            item, _ = done.tag
            video.switch_to(item, meter)
            if done.error is not None:
                writer.fail(_label(item), done.error)
                report(_label(item), done.error)
                continue
            try:
                _write(done, writer, meter, video, args)
            except OutputError as e:
                print(f"m2f infer: {e}", file=sys.stderr)
                return
            if gui is not None:
                _show(gui, done, predictor, args, stop)
            if stop.code:
                pipeline.stop_reading()  # what is already read still comes out and is written
    video.switch_to(None, meter)


class _VideoCounters:
    """The video or camera being written and its frame counters, for the status lines."""

    def __init__(self):
        self.item, self.last, self.dropped, self.processed = None, -1, 0, 0

    def switch_to(self, item, meter) -> None:
        if self.item is not None and item is not self.item:
            print(f"  {self.item.name}: {meter.line(self.dropped)}")
            self.item = None

    def frame(self, item, index: int, meter) -> None:
        if self.item is None:
            self.item, self.last, self.dropped, self.processed = item, -1, 0, 0
        self.dropped += index - self.last - 1
        self.last = index
        self.processed += 1
        if self.processed % 25 == 0:
            print(f"  {item.name}: {meter.line(self.dropped)}")


def _write(done, writer, meter, video, args) -> None:
    """One image's or frame's files and records (OutputError when the folder takes no more)."""
    item, index = done.tag
    if index is None:
        entry = writer.add(done.image, done.result, item.name, item.image_id, str(item.source))
        meter.add(done.result.timings)
        print(f"  {item.source.name}: {entry['segments']} segments, {entry['confident_instances']} "
              f"instances scoring >= {args.score_threshold}")
        return
    writer.add(done.image, done.result, f"{item.name}/frame_{index:06d}", writer.done + 1, f"{_label(item)}#{index}")
    meter.add(done.result.timings)
    video.frame(item, index, meter)


def _show(gui, done, predictor, args, stop) -> None:
    from m2f.runtime.formats import overlay

    result = done.result
    task = "panoptic" if result.panoptic is not None else "instance" if result.instances else "semantic"
    shown = overlay(done.image, result, predictor.names, task, args.score_threshold)
    gui.imshow("m2f", gui.cvtColor(shown, gui.COLOR_RGB2BGR))
    if gui.waitKey(1) & 0xFF == ord("q"):
        stop.code = 130


def run(args) -> int:
    from m2f.runtime.batch import RunLock, expand_inputs

    out = shared.output_folder(args.output)
    items = expand_inputs(args.inputs, exclude=out)
    lock = RunLock(out)
    try:
        return _run(args, items, out)
    finally:
        lock.release()


def _run(args, items, out) -> int:
    from m2f.errors import M2FError
    from m2f.runtime.batch import OutputError, RunWriter
    from m2f.runtime.stream import RateMeter

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
        predictor.close()
        try:
            written = writer.close({"model": str(args.model), "tasks": predictor.tasks, "timing": meter.line(),
                                    "interrupted": bool(stop.code),
                                    **({"stopped": writer.stopped} if writer.stopped else {})})
        except OutputError as e:
            raise M2FError(str(e)) from None
    if writer.stopped:
        print(f"{writer.done} images/frames done before the output folder took no more files ({writer.stopped}); "
              f"they are listed in {out}/results.json and {out}/instances.json", file=sys.stderr)
        return EXIT_OUTPUT_FULL
    if not writer.done and writer.failures and not stop.code:
        first = writer.failures[0]
        raise M2FError(first["error"] if len(items) == 1 else
                       f"none of the {len(items)} inputs could be processed (first: {first['input']}: "
                       f"{first['error']})" + ("" if written else f"; the earlier results in {out} were kept"))
    failed = f"; {len(writer.failures)} input(s) failed, listed in results.json" if writer.failures else ""
    print(f"{writer.done} images/frames done{failed}; see {out}/results.json, {out}/instances.json and the "
          f"per-image files" + (" (interrupted: everything done so far is written)" if stop.code else "")
          + ("" if written else f" (nothing succeeded: the earlier summaries in {out} were kept)"))
    return stop.code or (EXIT_SOME_FAILED if writer.failures else 0)
