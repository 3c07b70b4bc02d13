"""``m2f triton-repo MODEL -o REPO``: a Triton Inference Server model repository for a production server."""
from __future__ import annotations

from . import args as shared

HELP = "write a Triton Inference Server model repository (network + Python pre/post-processing + ensemble)"


def add_arguments(p) -> None:
    from m2f.serving.pipeline import DEFAULT_MAX_PIXELS
    from m2f.serving.repository import PRE_POST
    from m2f.serving.server import DEFAULT_MODEL_NAME, DEFAULT_QUEUE_DELAY_US

    p.add_argument("model", help=".onnx from 'm2f export', or a TensorRT engine with its .json sidecar")
    p.add_argument("-o", "--output", required=True, help="the repository folder (new or empty)")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME,
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
    p.add_argument("--plugins", help="TensorRT plugin library for an engine of the m2f flavor (copied into the "
                                     "repository)")


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
    return 0
