"""The one training loop for 2D segmentation, shared by every method and the full-data reference.

Reproducible and pre-emption safe: the data order and the augmentation are re-seeded from
(seed, epoch) at the start of every epoch, and a checkpoint (model, optimiser, epoch, torch RNG)
is written after every epoch. A job killed and started again resumes from the last checkpoint
and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from monai.losses import DiceLoss
from monai.transforms import (Compose, Rand2DElasticd, RandFlipd, RandScaleIntensityd,
                              RandShiftIntensityd)

from slicepick.models import build_seeded, load_model
from slicepick.seeding import stream_seed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 32
    lr: float = 1e-3
    augment: dict = field(default_factory=dict)
    seed: int = 0


class SliceDataset(torch.utils.data.Dataset):
    """Samples of the store by id; reads the memory map per item (never the whole pool)."""

    def __init__(self, store, sample_ids, transform=None):
        self.store, self.ids, self.transform = store, np.asarray(sample_ids), transform

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        sid = int(self.ids[i])
        item = {"image": np.array(self.store.images[sid]), "label": np.array(self.store.labels[sid])[None].astype(np.float32)}
        if self.transform is not None:
            item = self.transform(item)
        return torch.as_tensor(item["image"], dtype=torch.float32), torch.as_tensor(item["label"], dtype=torch.float32)


def build_augmentation(cfg: dict):
    """MONAI random flips, intensity scale/shift and elastic deformation (Sec. 3.2)."""
    if not cfg or not cfg.get("enabled", True):
        return None
    keys = ["image", "label"]
    return Compose([
        RandFlipd(keys, prob=cfg.get("flip_prob", 0.5), spatial_axis=0),
        RandFlipd(keys, prob=cfg.get("flip_prob", 0.5), spatial_axis=1),
        RandScaleIntensityd("image", factors=cfg.get("intensity_scale", 0.1), prob=cfg.get("intensity_prob", 0.5)),
        RandShiftIntensityd("image", offsets=cfg.get("intensity_shift", 0.1), prob=cfg.get("intensity_prob", 0.5)),
        Rand2DElasticd(keys, spacing=cfg.get("elastic_spacing", 16), magnitude_range=cfg.get("elastic_magnitude", [1, 2]),
                       prob=cfg.get("elastic_prob", 0.2), mode=("bilinear", "nearest"), padding_mode="zeros"),
    ])


def dice_loss(reduction: str = "mean") -> torch.nn.Module:
    """Multi-class soft Dice (Eq. 2) on softmax outputs; labels are class indices.

    ``reduction="none"`` gives one value per sample and class, shape (B, C, 1, 1).
    """
    return DiceLoss(to_onehot_y=True, softmax=True, reduction=reduction)


def fingerprint(**parts) -> str:
    """Identifies a training run, so a checkpoint is only resumed by the run that wrote it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_segmentation(model: torch.nn.Module, store, sample_ids, cfg: TrainConfig, *, device,
                       log_csv: str | Path, checkpoint: str | Path,
                       extra_loss: Callable | None = None, on_epoch_start: Callable | None = None,
                       run_id: str = "") -> list[dict]:
    """Train ``model`` on ``sample_ids`` for ``cfg.epochs`` epochs; returns the per-epoch log.

    ``extra_loss(model, images, labels, logits, epoch) -> tensor`` adds a method's own term
    (e.g. learning loss); ``on_epoch_start(model, epoch)`` lets a method change the model
    between epochs (e.g. stop a head's gradient).
    """
    checkpoint = Path(checkpoint)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = dice_loss()
    transform = build_augmentation(cfg.augment)
    dataset = SliceDataset(store, sample_ids, transform)
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                         generator=generator, num_workers=0, drop_last=False)
    history: list[dict] = []
    start_epoch = 0
    if checkpoint.exists():
        # on the CPU: torch.set_rng_state takes only a CPU tensor; load_state_dict copies onto the device
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            torch.set_rng_state(state["torch_rng"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"])
            log.info("resuming from %s after epoch %d", checkpoint, start_epoch)
        else:
            log.info("ignoring checkpoint %s from another run", checkpoint)

    for epoch in range(start_epoch, cfg.epochs):
        epoch_seed = stream_seed(cfg.seed, "epoch", epoch)
        generator.manual_seed(epoch_seed)
        if transform is not None:
            transform.set_random_state(seed=epoch_seed)
        if on_epoch_start is not None:
            on_epoch_start(model, epoch)
        model.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            optimiser.zero_grad()
            logits = model(images)
            loss = loss_fn(logits, labels)
            if extra_loss is not None:
                loss = loss + extra_loss(model, images, labels, logits, epoch)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(images)
            seen += len(images)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": total / max(seen, 1), "seconds": round(seconds, 3),
               "samples_per_s": round(seen / max(seconds, 1e-9), 1), "n_samples": seen}
        history.append(row)
        log.info("epoch %d/%d loss %.4f time %.2fs %.1f samples/s", epoch + 1, cfg.epochs, row["loss"],
                 seconds, row["samples_per_s"])
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"run_id": run_id, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(), "torch_rng": torch.get_rng_state(),
                    "history": json.dumps(history)}, tmp)
        tmp.replace(checkpoint)

    with open(log_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "loss", "seconds", "samples_per_s", "n_samples"])
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
