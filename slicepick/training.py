"""The one training loop for 2D segmentation, shared by every method and the full-data reference.

Reproducible and pre-emption safe: the data order and the augmentation are drawn from generators
re-seeded from (seed, epoch) at the start of every epoch, and a checkpoint (model, optimiser,
epoch) is written after every epoch. A job killed and started again resumes from the last
checkpoint and ends with the same weights as an uninterrupted run (CPU, same thread count).

A round trains for ``epochs`` epochs, or longer when that is fewer than ``min_steps`` optimiser
steps: a small annotated set (a round-0 start of 15 slices is one batch an epoch) would otherwise
stop after a handful of steps, before the model has left its "everything is foreground" start.

Speed: batches are read from the memory-mapped store with one indexing call each and augmented as
a batch (``BatchAugment``, on the training device), so the real path runs close to the bare
model step (``benchmarks/train_throughput.py``). On CUDA: pinned memory, non-blocking copies,
cuDNN autotuning, channels-last and bf16 autocast.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from slicepick.joblog import mark_useful_start
from slicepick.models import build_seeded, load_model
from slicepick.seeding import stream_seed

log = logging.getLogger(__name__)

LOSSES = ("dice", "dice_ce")  # training.loss
LR_SCHEDULES = ("constant", "cosine")  # training.lr_schedule
# train_log.csv: loss is what was minimised (a method's own term included), seg_loss the segmentation loss alone
LOG_COLUMNS = ["epoch", "loss", "seg_loss", "seconds", "samples_per_s", "n_samples"]


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 32
    lr: float = 1e-3
    augment: dict | None = None  # None: no augmentation; {}: on with build_augmentation's defaults
    seed: int = 0
    min_steps: int = 0  # floor on optimiser steps: small sets train for more epochs
    loss: str = "dice"  # dice (the paper's multi-class Dice) | dice_ce (Dice + cross-entropy)
    lr_schedule: str = "constant"  # constant (the paper's Adam) | cosine (lr to 0 over each training run)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The step's learning rate, from the step index alone (so a resumed run continues exactly).

    ``cosine`` anneals from ``cfg.lr`` to 0 over the run's steps: the model a round keeps is then
    the end of a settled descent rather than wherever constant-rate Adam happened to stop, which
    otherwise moves test Dice by several points between neighbouring epochs.
    """
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ValueError(f"training.lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")


def epochs_for(cfg: TrainConfig, n_samples: int) -> int:
    """Epochs a round trains: ``cfg.epochs``, or enough epochs to make ``cfg.min_steps`` steps."""
    batches = max(1, math.ceil(n_samples / cfg.batch_size))
    return max(int(cfg.epochs), math.ceil(int(cfg.min_steps) / batches))


AUGMENT_DEFAULTS = {"enabled": True, "flip_prob": 0.5, "intensity_prob": 0.5, "intensity_scale": 0.1,
                    "intensity_shift": 0.1, "elastic_prob": 0.2, "elastic_spacing": 16,
                    "elastic_magnitude": [1, 2]}


class BatchAugment:
    """Random flips, intensity scale and shift, and elastic deformation (Sec. 3.2) of a whole batch.

    The same transforms as MONAI's ``RandFlipd``, ``RandScaleIntensityd``, ``RandShiftIntensityd``
    and ``Rand2DElasticd``, each drawn per sample, applied to the batch at once on the training
    device: per-sample dictionary transforms cost more than the model step on small slices.
    Elastic: a displacement field drawn on a grid of control points ``elastic_spacing`` pixels
    apart, upsampled (bicubic) to the image, scaled by a magnitude drawn from
    ``elastic_magnitude`` (pixels); images are resampled bilinearly, labels by nearest neighbour,
    zeros outside. Parameters are drawn on the CPU from the caller's generator, so a seed gives
    the same batch on any device.
    """

    def __init__(self, cfg: dict | None):
        self.cfg = {**AUGMENT_DEFAULTS, **(cfg or {})}

    @property
    def enabled(self) -> bool:
        return bool(self.cfg["enabled"])

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """images (B, C, H, W) float, labels (B, 1, H, W) float class indices -> augmented copies."""
        c, dev = self.cfg, images.device
        b, _, h, w = images.shape

        def draw(*shape):
            return torch.rand(*shape, generator=generator).to(dev)

        for dim in (2, 3):
            flip = (draw(b) < c["flip_prob"]).view(b, 1, 1, 1)
            images = torch.where(flip, images.flip(dim), images)
            labels = torch.where(flip, labels.flip(dim), labels)
        scale = (draw(b) < c["intensity_prob"]) * (2 * draw(b) - 1) * c["intensity_scale"]
        images = images * (1 + scale.view(b, 1, 1, 1))
        shift = (draw(b) < c["intensity_prob"]) * (2 * draw(b) - 1) * c["intensity_shift"]
        images = images + shift.view(b, 1, 1, 1)
        elastic = draw(b) < c["elastic_prob"]
        lo, hi = (float(m) for m in c["elastic_magnitude"])
        magnitude = lo + (hi - lo) * draw(b)
        points = (max(2, math.ceil(h / c["elastic_spacing"]) + 1), max(2, math.ceil(w / c["elastic_spacing"]) + 1))
        coarse = torch.randn(b, 2, *points, generator=generator).to(dev)
        picked = torch.nonzero(elastic).flatten()
        if len(picked):
            n = len(picked)
            field = F.interpolate(coarse[picked], size=(h, w), mode="bicubic", align_corners=True)
            field = field * magnitude[picked].view(n, 1, 1, 1)
            # pixels -> normalised grid units ([-1, 1] spans size - 1 pixels with align_corners=True)
            field = torch.stack([field[:, 1] * 2 / max(w - 1, 1), field[:, 0] * 2 / max(h - 1, 1)], dim=-1)
            grid = F.affine_grid(torch.eye(2, 3, device=dev).expand(n, 2, 3), (n, 1, h, w), align_corners=True) + field
            images, labels = images.clone(), labels.clone()
            images[picked] = F.grid_sample(images[picked], grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=True)
            labels[picked] = F.grid_sample(labels[picked], grid, mode="nearest", padding_mode="zeros",
                                           align_corners=True)
        return images, labels


def build_augmentation(cfg: dict | None) -> BatchAugment | None:
    """The batch augmentation of ``training.augment``: ``{}`` means on with the defaults, as in the
    config schema; None or ``enabled: false`` is off."""
    if cfg is None:
        return None
    augment = BatchAugment(cfg)
    return augment if augment.enabled else None


def dice_loss(reduction: str = "mean") -> torch.nn.Module:
    """Multi-class soft Dice (Eq. 2) on softmax outputs; labels are class indices.

    ``reduction="none"`` gives one value per sample and class, shape (B, C, 1, 1).
    """
    return DiceLoss(to_onehot_y=True, softmax=True, reduction=reduction)


def segmentation_loss(name: str) -> torch.nn.Module:
    """``dice``: the paper's loss. ``dice_ce``: Dice over the foreground classes plus cross-entropy
    (MONAI ``DiceCELoss``): the per-pixel term keeps a model trained on a few slices from settling on
    "everything is tumour", the foreground-only Dice from settling on "nothing is"."""
    if name == "dice":
        return dice_loss()
    if name == "dice_ce":
        return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    raise ValueError(f"training.loss '{name}' is not one of {list(LOSSES)}")


def fingerprint(**parts) -> str:
    """Identifies a training run, so a checkpoint is only resumed by the run that wrote it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_batch(store, ids: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) and labels (B, 1, H, W, float class indices) of ``ids``: one read each."""
    images = torch.from_numpy(np.ascontiguousarray(store.images[ids], dtype=np.float32))
    labels = torch.from_numpy(np.asarray(store.labels[ids], dtype=np.float32)[:, None])
    if device.type == "cuda":
        return images.pin_memory().to(device, non_blocking=True), labels.pin_memory().to(device, non_blocking=True)
    return images, labels


def train_segmentation(model: torch.nn.Module, store, sample_ids, cfg: TrainConfig, *, device,
                       log_csv: str | Path, checkpoint: str | Path,
                       extra_loss: Callable | None = None, on_epoch_start: Callable | None = None,
                       run_id: str = "") -> list[dict]:
    """Train ``model`` on ``sample_ids`` for ``epochs_for(cfg, len(sample_ids))`` epochs; returns
    the per-epoch log.

    ``store`` needs only ``images`` and ``labels`` arrays indexable by sample id.
    ``extra_loss(model, images, labels, logits, epoch) -> tensor`` adds a method's own term
    (e.g. learning loss); ``on_epoch_start(model, epoch, epochs)`` lets a method change the model
    between epochs (e.g. stop a head's gradient).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    checkpoint = Path(checkpoint)
    sample_ids = np.asarray(sample_ids)
    epochs = epochs_for(cfg, len(sample_ids))
    model.to(device)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = segmentation_loss(cfg.loss)
    augment = build_augmentation(cfg.augment)
    generator = torch.Generator()
    history: list[dict] = []
    start_epoch = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"])
            log.info("resuming from %s after epoch %d", checkpoint, start_epoch)
        else:
            log.info("ignoring checkpoint %s from another run", checkpoint)
    batches = math.ceil(len(sample_ids) / cfg.batch_size)
    log.info("training on %d samples: %d epochs of %d batches (%s loss, floor %d steps)", len(sample_ids), epochs,
             batches, cfg.loss, cfg.min_steps)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    first_step = start_epoch == 0
    for epoch in range(start_epoch, epochs):
        generator.manual_seed(stream_seed(cfg.seed, "epoch", epoch))
        if on_epoch_start is not None:
            on_epoch_start(model, epoch, epochs)
        model.train()
        t0, total, seg_total, seen = time.perf_counter(), 0.0, 0.0, 0
        order = sample_ids[torch.randperm(len(sample_ids), generator=generator).numpy()]
        for batch_index, start in enumerate(range(0, len(order), cfg.batch_size)):
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(cfg, epoch * batches + batch_index, epochs * batches)
            images, labels = read_batch(store, order[start:start + cfg.batch_size], device)
            if augment is not None:
                images, labels = augment(images, labels, generator)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            if first_step:
                mark_useful_start(log)
                first_step = False
            optimiser.zero_grad(set_to_none=True)
            with autocast:
                logits = model(images)
                seg_loss = loss_fn(logits.float(), labels)
                loss = seg_loss
                if extra_loss is not None:
                    loss = loss + extra_loss(model, images, labels, logits.float(), epoch)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(images)
            seg_total += float(seg_loss.detach()) * len(images)
            seen += len(images)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": total / max(seen, 1), "seg_loss": seg_total / max(seen, 1), "seconds": round(seconds, 3),
               "samples_per_s": round(seen / max(seconds, 1e-9), 1), "n_samples": seen}
        history.append(row)
        log.info("epoch %d/%d loss %.4f time %.2fs %.1f samples/s", epoch + 1, epochs, row["loss"],
                 seconds, row["samples_per_s"])
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"run_id": run_id, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(), "history": json.dumps(history)}, tmp)
        tmp.replace(checkpoint)

    if cuda:
        model.to(memory_format=torch.contiguous_format)
    with open(log_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    return history


@torch.inference_mode()
def predict_classes(model: torch.nn.Module, store, sample_ids, device, batch_size: int = 64) -> np.ndarray:
    """Argmax class map ``(N, H, W)`` for the given samples, in order."""
    model.eval()
    out = []
    for i in range(0, len(sample_ids), batch_size):
        ids = np.asarray(sample_ids[i:i + batch_size])
        images = torch.as_tensor(store.read_images(ids), device=device)
        out.append(model(images).argmax(1).cpu().numpy().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0,) + store.labels.shape[1:], np.uint8)


def train_unet_round(store, sample_ids, previous_model, spec: dict, cfg: TrainConfig, *, device,
                     log_csv: str | Path, checkpoint_dir: str | Path, run_id: str,
                     params: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """One round's training step for a plain U-Net; every method's ``train_round`` has this signature.

    ``previous_model``: path of the previous round's model.pt, fine-tuned when given; else a new
    network of ``spec`` (the base U-Net spec) initialised from ``cfg.seed``. ``checkpoint_dir``
    receives ``checkpoint*.pt`` files for resuming; the caller removes them once it has saved the
    returned model with ``save_model(path, model, spec)``. ``params``: the method's config block.
    """
    if previous_model is not None:
        model, payload = load_model(previous_model, device)
        spec = payload["spec"]
    else:
        model = build_seeded(spec, cfg.seed)
    train_segmentation(model, store, sample_ids, cfg, device=device, log_csv=log_csv,
                       checkpoint=Path(checkpoint_dir) / "checkpoint.pt", run_id=run_id)
    return model, spec
