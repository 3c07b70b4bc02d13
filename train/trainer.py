"""The training loop: batches of LSJ-augmented samples -> model (with deep supervision) -> SetCriterion -> AdamW,
with the lr schedule, full-model gradient clipping, a loss log, periodic checkpoints and exact resume.

Files written under the output folder:
    last.pth        model + optimiser + iteration + random states (resume point; written atomically)
    model.pth       the final weights as a detectron2-style {"model": state_dict} (FrozenBN form) plus
                    "m2f_config" (the model config: classes, thing ids, sizes), so ``load_checkpoint(path)`` and
                    ``m2f export model.pth`` need no preset
    loss_log.jsonl  one JSON line per logged iteration: iteration, lr, loss and its parts, seconds per iteration
                    (a resumed run drops the lines after its checkpoint and appends)
    train_config.json  the TrainConfig and the model config
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from m2f.errors import M2FError
from m2f.fileio import atomic_path, write_json
from m2f.model.mask2former import Mask2Former
from m2f.threads import use_threads

from .augment import LSJ
from .batchnorm import freeze_batchnorm, unfreeze_batchnorm
from .criterion import LossConfig, SetCriterion
from .matcher import MatcherWeights
from .optim import build_optimizer, clip_full_model, lr_factor, set_lr


@dataclass
class TrainConfig:
    iterations: int = 2000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_multiplier: float = 0.1  # the recipe's 0.1 assumes a pretrained backbone; from scratch use 1.0
    schedule: str = "poly"  # "poly" or "step"
    clip_norm: float = 0.01
    crop_height: int = 192  # LSJ target canvas
    crop_width: int = 256
    min_scale: float = 0.1
    max_scale: float = 2.0
    num_points: int = 12544  # points per mask for the matcher and the losses
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = m2f's default (m2f.threads)


class Batches:
    """Random batches from a dataset of ``Sample``s (``m2f.datasets.coco``), augmented with LSJ.

    ``next()`` -> (pixel_values float32 [B, 3, TH, TW] normalised, targets [{"labels" int64 [G], "masks" float32
    [G, TH, TW]}]). The order is drawn from ``rng``, so a resumed run continues the same stream."""

    def __init__(self, dataset, model_config, cfg: TrainConfig, rng: np.random.Generator):
        if len(dataset) == 0:
            raise M2FError("the training dataset has no images")
        self.dataset, self.rng, self.batch_size = dataset, rng, cfg.batch_size
        self.lsj = LSJ(cfg.crop_height, cfg.crop_width, cfg.min_scale, cfg.max_scale)
        self.mean = np.asarray(model_config.pixel_mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(model_config.pixel_std, np.float32).reshape(3, 1, 1)

    def next(self):
        images, targets = [], []
        for index in self.rng.integers(0, len(self.dataset), self.batch_size):
            sample = self.dataset[int(index)]
            image, masks, keep, _ = self.lsj(sample.image, sample.masks, self.rng)
            images.append((image - self.mean) / self.std)
            targets.append({"labels": torch.from_numpy(sample.labels[keep]),
                            "masks": torch.from_numpy(masks).float()})
        return torch.from_numpy(np.stack(images)), targets


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _random_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


def _restore_random_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


class Progress:
    """One status line (rewritten in place on a terminal, appended otherwise): iteration, loss, lr, speed, ETA."""

    def __init__(self, total: int, start: int, stream=sys.stderr):
        self.total, self.start, self.stream, self.t0 = total, start, stream, time.perf_counter()
        self.tty = stream.isatty()

    def update(self, iteration: int, loss: float, lr: float) -> float:
        done = iteration + 1 - self.start
        per_it = (time.perf_counter() - self.t0) / max(done, 1)
        eta = per_it * (self.total - iteration - 1)
        width = 24
        bar = "#" * int(width * (iteration + 1) / self.total)
        line = (f"[{bar:<{width}}] {iteration + 1}/{self.total}  loss {loss:.3f}  lr {lr:.2e}  "
                f"{per_it:.2f} s/it  eta {int(eta // 60)}m{int(eta % 60):02d}s")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
        return per_it

    def close(self):
        if self.tty:
            self.stream.write("\n")


def train(model: Mask2Former, dataset, out: str | Path, cfg: TrainConfig, resume: bool = False,
          progress: bool = True) -> dict:
    """Train ``model`` in place on ``dataset`` and write the files above under ``out``; returns the last logged losses.

    With ``resume`` the run continues from ``out/last.pth`` (weights, optimiser moments, schedule position, data
    order and random states), so an interrupted run ends where an uninterrupted one would."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_threads(cfg.threads or None)
    if hasattr(dataset, "verify"):  # m2f's datasets check every file up front; other sequences are taken as they are
        if progress:
            print(f"checking the {len(dataset)} training images", file=sys.stderr, flush=True)
        dataset.verify()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if model.config.backbone.kind == "resnet" and model.config.backbone.norm in ("BN", "SyncBN", "naiveSyncBN"):
        unfreeze_batchnorm(model)
    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.backbone_multiplier)
    criterion = SetCriterion(LossConfig(num_points=cfg.num_points, matcher=MatcherWeights(num_points=cfg.num_points)))
    start = 0
    last = out / "last.pth"
    if resume:
        if not last.exists():
            raise M2FError(f"--resume: there is no {last} to resume from; start without --resume")
        state = torch.load(last, map_location="cpu", weights_only=False)  # our own file, with optimiser state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_random_state(rng, state["random"])
        start = state["iteration"]
        log_path = out / "loss_log.jsonl"
        if log_path.exists():  # drop lines of iterations after the checkpoint: they are about to be redone
            lines = log_path.read_text().splitlines()
            log_path.write_text("".join(line + "\n" for line in lines if json.loads(line)["iteration"] <= start))
    write_json(out / "train_config.json", {"train": asdict(cfg), "model": model.config.to_dict()})
    batches = Batches(dataset, model.config, cfg, rng)
    bar = Progress(cfg.iterations, start) if progress else None
    logged: dict = {}
    completed = start
    with open(out / "loss_log.jsonl", "a") as log:
        tick, last_logged = time.perf_counter(), start
        try:
            for iteration in range(start, cfg.iterations):
                factor = lr_factor(iteration, cfg.iterations, cfg.schedule)
                set_lr(optimizer, factor)
                pixel_values, targets = batches.next()
                losses = criterion(model(pixel_values, return_aux=True), targets)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                grad_norm = clip_full_model(model, cfg.clip_norm) if cfg.clip_norm > 0 else None
                optimizer.step()
                completed = iteration + 1
                # the first iteration is logged too, so a long run shows progress (and its speed) at once
                if completed == start + 1 or completed % cfg.log_every == 0 or completed == cfg.iterations:
                    now = time.perf_counter()
                    seconds = (now - tick) / (completed - last_logged)
                    tick, last_logged = now, completed
                    final = {k: round(float(v.detach()), 5) for k, v in losses.items()
                             if "_" not in k.replace("loss_", "", 1)}
                    logged = {"iteration": completed, "lr": cfg.lr * factor, **final, "grad_norm": grad_norm,
                              "s_per_it": round(seconds, 3)}
                    log.write(json.dumps(logged) + "\n")
                    log.flush()
                    if bar:
                        bar.update(iteration, logged["loss"], cfg.lr * factor)
                if completed % cfg.checkpoint_every == 0 or completed == cfg.iterations:
                    _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "iteration": completed, "random": _random_state(rng)}, last)
        except KeyboardInterrupt:
            if bar:
                bar.close()
            saved = torch.load(last, map_location="cpu", weights_only=False)["iteration"] if last.exists() else 0
            print(f"interrupted after iteration {completed}; `--resume` continues from the checkpoint at iteration "
                  f"{saved} ({last})", file=sys.stderr)
            raise
    if bar:
        bar.close()
    model.eval()
    freeze_batchnorm(model)
    _atomic_save({"model": model.state_dict(), "m2f_config": model.config.to_dict()}, out / "model.pth")
    return logged
