"""``m2f synthetic``: write the synthetic panoptic dataset (COCO panoptic format, deterministic by seed)."""
from . import args as shared

HELP = "write a synthetic panoptic dataset (shapes on textured backgrounds) in COCO panoptic format"


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, help="folder to write images/, panoptic/ and panoptic.json to")
    p.add_argument("-n", "--num-images", type=shared.positive_int, default=2000)
    p.add_argument("--seed", type=shared.number_in(0, shared.MAX_SEED, int), default=0)


def run(args) -> int:
    from m2f.errors import require

    require("PIL", "train", "m2f synthetic")
    from m2f.datasets.synthetic import generate

    def progress(done, total):
        if done % 100 == 0 or done == total:
            print(f"\r{done}/{total} images", end="\n" if done == total else "", flush=True)

    path = generate(shared.output_folder(args.output), args.num_images, seed=args.seed, progress=progress)
    print(f"wrote {path}")
    return 0
