"""``m2f infer MODEL INPUT… -o OUT``: images, folders, videos and cameras through the torch-free runtime."""
from __future__ import annotations

import signal
from pathlib import Path

HELP = "run an exported model (.onnx or TensorRT engine) on images, folders, videos or cameras"


def add_arguments(p) -> None:
    p.add_argument("model", help=".onnx from 'm2f export', or a TensorRT engine with its .json sidecar")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, video files, or camera indices (0, 1…)")
    p.add_argument("-o", "--output", required=True, help="folder for the results")
    p.add_argument("--task", action="append", choices=("semantic", "instance", "panoptic"),
                   help="only these tasks (repeatable; default: all the model produces)")
    p.add_argument("--threshold", type=float, help="object-mask threshold (default: the model's metadata)")
    p.add_argument("--overlap-threshold", type=float, help="panoptic overlap threshold (default: metadata)")
    p.add_argument("--resize", choices=("pil", "cv2"), default="pil",
                   help="pil: exactly the reference (default); cv2: faster, slightly different (see README)")
    p.add_argument("--providers", help="ONNX Runtime providers, comma-separated (e.g. CUDAExecutionProvider)")
    p.add_argument("--plugins", help="TensorRT plugin library (.so); also $M2F_PLUGINS")
    p.add_argument("--drop", choices=("none", "latest"),
                   help="video/camera frame policy when inference is late (default: latest for cameras, none for "
                        "files)")
    p.add_argument("--max-frames", type=int, help="stop a video or camera after this many processed frames")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay images")
    p.add_argument("--show", action="store_true", help="show overlays in a window while running (needs a display)")


def expand_inputs(inputs: list[str]):
    """-> list of ("image", Path) | ("video", Path) | ("camera", int), in the order given."""
    from m2f.errors import M2FError
    from m2f.runtime.image_io import IMAGE_SUFFIXES
    from m2f.runtime.stream import VIDEO_SUFFIXES

    items = []
    for raw in inputs:
        if raw.isdigit():
            items.append(("camera", int(raw)))
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise M2FError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            items += [("image", p) for p in found]
        elif not path.exists():
            raise M2FError(f"input {path} does not exist")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            items.append(("video", path))
        else:
            items.append(("image", path))
    return items


def run(args) -> int:
    from m2f.errors import M2FError
    from m2f.runtime import Predictor
    from m2f.fileio import write_json
    from m2f.runtime.formats import coco_instances, overlay, write_result
    from m2f.runtime.image_io import read_image
    from m2f.runtime.stream import RateMeter, frames

    items = expand_inputs(args.inputs)
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise M2FError(f"cannot create the output folder {out}: {e.strerror}") from None
    providers = args.providers.split(",") if args.providers else None
    predictor = Predictor(args.model, tasks=args.task, providers=providers, plugins=args.plugins,
                          resize=args.resize, threshold=args.threshold, overlap_threshold=args.overlap_threshold)
    names = predictor.names
    instances: list[dict] = []
    index: list[dict] = []
    meter = RateMeter()
    window = None
    if args.show:
        import cv2

        window = "m2f"
        cv2.namedWindow(window)
    # Ctrl-C finishes the current frame, then the summary files are written: nothing already done is lost.
    stop = {"requested": False}
    previous = signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))

    def handle(image, stem: str, image_id) -> None:
        result = predictor.predict(image)
        written = write_result(result, image, names, out, stem, overlays=not args.no_overlay)
        records = coco_instances(result, image_id)
        instances.extend(records)
        index.append({"image_id": image_id, "height": result.height, "width": result.width,
                      "instances": len(records), "segments": len(result.segments), **written})
        meter.add(result.timings)
        if window:
            import cv2

            shown = overlay(image, result, names, "panoptic" if result.panoptic is not None else "semantic")
            cv2.imshow(window, cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
            if cv2.waitKey(1) & 0xFF == ord("q"):
                stop["requested"] = True

    try:
        print(f"model {args.model}: tasks {', '.join(predictor.tasks)}; writing to {out}/")
        for kind, source in items:
            if stop["requested"]:
                break
            if kind == "image":
                handle(read_image(source), source.stem, source.stem)
                print(f"  {source.name}: {index[-1]['segments']} segments, {index[-1]['instances']} instances")
                continue
            name = source.stem if kind == "video" else f"camera{source}"
            (out / name).mkdir(exist_ok=True)
            drop = args.drop or ("latest" if kind == "camera" else "none")
            processed, last_index = 0, -1
            dropped = 0
            for frame in frames(str(source) if kind == "video" else source, drop=drop):
                dropped += frame.index - last_index - 1
                last_index = frame.index
                handle(frame.image, f"{name}/frame_{frame.index:06d}", f"{name}/{frame.index}")
                processed += 1
                if processed % 25 == 0:
                    print(f"  {name}: {meter.line(dropped)}")
                if stop["requested"] or (args.max_frames and processed >= args.max_frames):
                    break
            print(f"  {name}: {meter.line(dropped)}")
    finally:
        signal.signal(signal.SIGINT, previous)
        write_json(out / "instances.json", instances)
        write_json(out / "results.json", {"model": str(args.model), "tasks": predictor.tasks, "class_names": names,
                                          "images": index, "timing": meter.line(), "interrupted": stop["requested"]})
        predictor.close()
    print(f"{len(index)} images/frames done ({meter.line()}); see {out}/results.json, {out}/instances.json "
          f"and the per-image files" + (" (interrupted: everything done so far is written)"
                                        if stop["requested"] else ""))
    return 130 if stop["requested"] else 0
