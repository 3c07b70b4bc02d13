"""``m2f train``: fine-tune (or train from scratch) a preset on a COCO panoptic or COCO instances dataset."""
from . import args as shared

MAX_CLIP_NORM = 1000.0  # gradient norms of these models are 0.1-100; larger "clips" are a typo, 0 turns it off
HELP = "train or fine-tune a Mask2Former preset on a COCO panoptic / instances dataset"


def add_arguments(p) -> None:
    p.add_argument("--preset", required=True, help="architecture preset (see `m2f presets`)")
    p.add_argument("--data", required=True, help="COCO panoptic json (images/ and panoptic/ beside it) or COCO "
                   "instances json (images/ beside it), or a folder holding panoptic.json")
    p.add_argument("--image-dir", help="images folder when it is not beside the json")
    p.add_argument("--panoptic-dir", help="panoptic PNG folder when it is not beside the json")
    p.add_argument("-o", "--output", required=True, help="run folder: checkpoints, loss log, final model.pth")
    p.add_argument("--init", help="checkpoint to start from (any format `m2f inspect` reads); the class head may "
                   "have another class count")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects in --init")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pth")
    p.add_argument("--iters", type=shared.positive_int, default=2000)
    p.add_argument("--batch-size", type=shared.positive_int, default=4)
    p.add_argument("--lr", type=shared.positive_float, default=1e-4)
    p.add_argument("--weight-decay", type=shared.number_in(0, 1), default=0.05)
    p.add_argument("--backbone-multiplier", type=shared.number_in(0, 10), default=0.1,
                   help="backbone lr factor (0.1 for a pretrained backbone, 1.0 from scratch)")
    p.add_argument("--schedule", choices=("poly", "step"), default="poly")
    p.add_argument("--clip", type=shared.number_in(0, MAX_CLIP_NORM), default=0.01,
                   help="full-model gradient-norm clip (0 = off)")
    p.add_argument("--crop", type=shared.positive_int, nargs=2, metavar=("H", "W"), default=(192, 256),
                   help="LSJ canvas")
    p.add_argument("--scale", type=shared.positive_float, nargs=2, metavar=("MIN", "MAX"), default=(0.1, 2.0),
                   help="LSJ scales")
    p.add_argument("--points", type=shared.positive_int, default=12544,
                   help="points per mask in the matcher and losses")
    p.add_argument("--checkpoint-every", type=shared.positive_int, default=500)
    p.add_argument("--seed", type=shared.number_in(0, shared.MAX_SEED, int), default=0)
    shared.add_threads(p)
    p.add_argument("--eval", help="held-out dataset to score the final model on (PQ / mask AP / mIoU)")


def run(args) -> int:
    from m2f.errors import ArgumentError, require

    if args.scale[0] > args.scale[1]:
        raise ArgumentError(f"--scale {args.scale[0]:g} {args.scale[1]:g}: MIN is above MAX; give the smaller "
                            f"scale first")

    for module in ("torch", "scipy", "PIL"):
        require(module, "train", "m2f train")
    import dataclasses
    import json
    from pathlib import Path

    from m2f.model.mask2former import Mask2Former
    from m2f.model.presets import get_preset
    from m2f.datasets.coco import CocoInstances, open_dataset
    from m2f.train.init import init_from_checkpoint
    from m2f.train.trainer import TrainConfig, train

    dataset = open_dataset(args.data, args.image_dir, args.panoptic_dir)
    cfg = get_preset(args.preset)
    instances_only = isinstance(dataset, CocoInstances)
    cfg = dataclasses.replace(cfg, num_classes=len(dataset.class_names), class_names=list(dataset.class_names),
                              thing_ids=list(dataset.thing_ids), category_ids=list(dataset.category_ids),
                              name=f"{args.preset}-finetuned",
                              semantic_on=cfg.semantic_on and not instances_only,
                              panoptic_on=cfg.panoptic_on and not instances_only,
                              instance_on=cfg.instance_on or instances_only)
    model = Mask2Former(cfg)
    if args.init and not args.resume:
        for note in init_from_checkpoint(model, args.init, trust=args.trust_checkpoint):
            print(f"note: {note}")
    tc = TrainConfig(iterations=args.iters, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                     backbone_multiplier=args.backbone_multiplier, schedule=args.schedule, clip_norm=args.clip,
                     crop_height=args.crop[0], crop_width=args.crop[1], min_scale=args.scale[0],
                     max_scale=args.scale[1], num_points=args.points, checkpoint_every=args.checkpoint_every,
                     seed=args.seed, threads=args.threads or 0)
    print(f"training {args.preset} on {len(dataset)} images ({cfg.num_classes} classes) for {tc.iterations} "
          f"iterations of {tc.batch_size} -> {args.output}/")
    last = train(model, dataset, args.output, tc, resume=args.resume)
    out = Path(args.output)
    print(f"final loss {last.get('loss', float('nan')):.3f}; weights: {out / 'model.pth'} (its config travels "
          f"inside: `m2f export {out / 'model.pth'} -o model.onnx` needs no preset)")
    if args.eval:
        from m2f.validate.evaluate import evaluate_pytorch

        scores = evaluate_pytorch(model, open_dataset(args.eval))
        (out / "eval.json").write_text(json.dumps(scores, indent=1))
        print(json.dumps(scores, indent=1))
    return 0
