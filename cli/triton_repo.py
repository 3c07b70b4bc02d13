"""``m2f triton-repo MODEL -o REPO``: a Triton Inference Server model repository for a production server."""
from __future__ import annotations

from . import args as shared

HELP = "write a Triton Inference Server model repository (network + Python pre/post-processing + ensemble)"


def add_arguments(p) -> None:
    from m2f.serving import DEFAULT_MAX_PIXELS, DEFAULT_MODEL_NAME, DEFAULT_QUEUE_DELAY_US, PRE_POST

    p.add_argument("model", help=".onnx from 'm2f export', or a TensorRT engine with its .json sidecar")
    p.add_argument("-o", "--output", required=True, help="the repository folder (new or empty)")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, type=shared.model_name,
                   help=f"the name clients call (default {DEFAULT_MODEL_NAME})")
    p.add_argument("--max-batch", type=shared.positive_int, default=8,
                   help="largest batch of Triton's dynamic batcher (default 8; needs a graph exported with "
                        "--dynamic, a static graph is served one image at a time)")
    p.add_argument("--max-queue-delay", type=shared.non_negative_int, default=DEFAULT_QUEUE_DELAY_US,
                   help=f"microseconds a request may wait for a batch (default {DEFAULT_QUEUE_DELAY_US})")
    p.add_argument("--instances", type=shared.positive_int, default=1, help="instances of each model (default 1)")
    p.add_argument("--pre-post", choices=PRE_POST, default="python",
                   help="python: Python-backend pre/post-processing and an ensemble, clients send encoded images "
                        "(default); client: the network alone, clients do pre/post-processing")
    p.add_argument("--max-pixels", type=shared.positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest image the pre-processing accepts (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--plugins", type=shared.existing_file,
                   help="TensorRT plugin library for an engine of the m2f flavor (copied into the "
                                     "repository)")
    p.add_argument("--check", action="store_true",
                   help="then load the pre/post-processing models in the Triton server PyTriton ships, run a sample "
                        "image through them and the network, and compare with the in-process runtime (needs "
                        "m2f[serve]; the network runs in this process, that server has no ONNX Runtime backend)")
    shared.add_threads(p)


def run(args) -> int:
    from pathlib import Path

    from m2f.serving.repository import RepoOptions, write_repository

    options = RepoOptions(name=args.model_name, max_batch=args.max_batch, instances=args.instances,
                          pre_post=args.pre_post, queue_delay_us=args.max_queue_delay, max_pixels=args.max_pixels,
                          plugins=Path(args.plugins) if args.plugins else None)
    repo = write_repository(args.model, args.output, options)
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    print(f"wrote {repo}/: {', '.join(models)}; serve it with: tritonserver --model-repository={repo.resolve()} "
          f"(see {repo}/README.md)")
    if args.check:
        return _check(repo, args)
    return 0


def _check(repo, args) -> int:
    from m2f.assets import SAMPLES
    from m2f.errors import ArgumentError
    from m2f.runtime.image_io import read_image
    from m2f.serving.local_triton import check_repository

    if args.pre_post != "python":
        raise ArgumentError("--check runs the Python pre/post-processing models, which --pre-post client leaves out")
    image = read_image(sorted((SAMPLES / "images").glob("*.png"))[0])
    print("checking: the repository's Python models in the bundled Triton server, the network in this process ...",
          flush=True)
    problems = check_repository(repo, args.model, args.model_name, image, threads=args.threads)
    if problems:
        print(f"check FAILED: {'; '.join(problems)}")
        return 1
    print("check passed: the served answer equals the in-process runtime's (panoptic, semantic, instances)")
    return 0
