"""The 3D model of the allocation study: MONAI's BasicUNet on whole volumes (tiny data) or on
patches with sliding-window inference (paper scale), trained with a masked loss.

Masked loss: softmax probabilities and one-hot targets are multiplied by the mask of labelled
slices before MONAI's Dice loss (and the cross-entropy, for ``dice_ce``, is averaged over labelled
voxels only), so an unlabelled slice adds nothing to the loss and its logits get exactly zero
gradient. A volume's input is its stacked non-blank slices (C, H, W, Z), Z zero-padded to a
multiple of 16 (four poolings) and to at least the patch size; the padding is never labelled.
At every step the labelled slices move to a random depth (``RandZRolld``; patches cut at a random
depth), or the network learns which depths carry labels.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceLoss
from monai.networks.nets import BasicUNet
from monai.transforms import (Compose, MapTransform, RandCropByPosNegLabeld, RandFlipd, Randomizable,
                              RandScaleIntensityd, RandShiftIntensityd, RandSpatialCropd)

from slicepick.seeding import stream_seed
from slicepick.training import TrainConfig, epochs_for, learning_rate

log = logging.getLogger(__name__)
Z_MULTIPLE = 16


def build_unet3d(in_channels: int, n_classes: int, features, seed: int) -> torch.nn.Module:
    """3D U-Net (two conv + instance norm + LeakyReLU per block), weights drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=n_classes,
                         features=tuple(int(f) for f in features))


def masked_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "dice") -> torch.Tensor:
    """Dice (or Dice + CE) over labelled voxels only. ``target``: (B, 1, ...) classes; ``mask``: (B, 1, ...) 0/1."""
    n_classes = logits.shape[1]
    mask = mask.to(logits.dtype)
    onehot = F.one_hot(target[:, 0].long(), n_classes).movedim(-1, 1).to(logits.dtype)
    probs = logits.softmax(1)
    if kind == "dice":
        loss = DiceLoss(to_onehot_y=False, softmax=False)(probs * mask, onehot * mask)
    elif kind == "dice_ce":  # as the 2D loss: Dice over the foreground classes, cross-entropy per labelled voxel
        loss = DiceLoss(to_onehot_y=False, softmax=False, include_background=False)(probs * mask, onehot * mask)
        ce = F.cross_entropy(logits, target[:, 0].long(), reduction="none") * mask[:, 0]
        loss = loss + ce.sum() / mask.sum().clamp_min(1.0)
    else:
        raise ValueError(f"allocation: unknown loss '{kind}' (dice | dice_ce)")
    return loss


def pad_depth(volume: np.ndarray, depth: int) -> np.ndarray:
    """Zero-pad the last axis to ``depth``."""
    pad = depth - volume.shape[-1]
    return np.pad(volume, [(0, 0)] * (volume.ndim - 1) + [(0, pad)]) if pad > 0 else volume


def padded_depth(z: int, patch_depth: int | None = None) -> int:
    return max(math.ceil(z / Z_MULTIPLE) * Z_MULTIPLE, patch_depth or 0)


def stack_case(store, case: str) -> tuple[np.ndarray, np.ndarray]:
    """A case's image (C, H, W, Z) and classes (H, W, Z) from the slice store."""
    ids = store.case_samples(case)
    return np.moveaxis(np.array(store.images[ids]), 0, -1), np.moveaxis(np.array(store.labels[ids]), 0, -1)


class RandZRolld(Randomizable, MapTransform):
    """Rolls the volume, its labels and its mask of labelled slices by a random number of slices
    (circularly, along the last axis), a new one for every sample.

    Why: with the same slices labelled at every step, a 3D U-Net learns where they are (zero
    padding tells it the absolute depth) and is right only there, flooding the unlabelled slices
    with tumour (measured: Dice 0.93-0.98 on the labelled slices of its training volumes, 0.01-0.38
    on the others). Rolled, a labelled slice can be at any depth. The seam joins the padded end to
    the first slice; the stacked slices are the volume's non-blank extent, so it joins near-empty
    ends.
    """

    def __init__(self, keys):
        MapTransform.__init__(self, keys)
        self._shift = 0

    def randomize(self, depth: int) -> None:
        self._shift = int(self.R.randint(depth))

    def __call__(self, data):
        d = dict(data)
        self.randomize(np.shape(d[self.keys[0]])[-1])
        for key in self.key_iterator(d):
            d[key] = np.roll(np.asarray(d[key]), self._shift, axis=-1)
        return d


def _augmentation(augment: dict, patch_size, z_shift: bool = True):
    keys = ["image", "label", "mask"]
    steps = []
    if patch_size:
        # centred on a labelled voxel, then cut to size at a random offset: the labelled slice is not
        # always the patch's middle one (the same leak as above, at a fixed depth of the patch)
        wide = [patch_size[0], patch_size[1], 2 * patch_size[2]] if z_shift else list(patch_size)
        steps.append(RandCropByPosNegLabeld(keys, label_key="mask", spatial_size=wide, pos=1, neg=0,
                                            num_samples=1, allow_smaller=True))
        if z_shift:
            steps.append(RandSpatialCropd(keys, roi_size=list(patch_size), random_size=False))
    elif z_shift:
        steps.append(RandZRolld(keys))
    if augment and augment.get("enabled", True):
        p = augment.get("flip_prob", 0.5)
        steps += [RandFlipd(keys, prob=p, spatial_axis=0), RandFlipd(keys, prob=p, spatial_axis=1),
                  RandScaleIntensityd("image", factors=augment.get("intensity_scale", 0.1), prob=augment.get("intensity_prob", 0.5)),
                  RandShiftIntensityd("image", offsets=augment.get("intensity_shift", 0.1), prob=augment.get("intensity_prob", 0.5))]
    return Compose(steps) if steps else None


def train_volumes(model: torch.nn.Module, volumes: list[dict], cfg: dict, *, seed: int, device) -> list[dict]:
    """Train on ``volumes`` (dicts of image (C, H, W, Z), label (H, W, Z), labelled (Z,) bool).

    Runs max(epochs, ceil(min_steps / batches per epoch)) epochs at ``lr`` (``lr_schedule`` constant, or
    cosine to 0 as the 2D training); the data order and augmentation come from ``seed``. Returns the per-epoch log (epoch, loss, seconds, n_samples).
    """
    patch = cfg.get("patch_size")
    items = []
    for v in volumes:
        # each volume padded to its own depth, as at inference: extra zero slices would change the instance
        # norm's statistics between training and test (so a batch runs one forward pass per shape)
        depth = padded_depth(v["image"].shape[-1], patch[2] if patch else None)
        mask = np.broadcast_to(v["labelled"][None, None, None, :], (1, *v["label"].shape)).astype(np.float32)
        items.append({"image": pad_depth(v["image"].astype(np.float32), depth),
                      "label": pad_depth(v["label"][None].astype(np.float32), depth),
                      "mask": pad_depth(mask, depth)})
    transform = _augmentation(cfg.get("augment") or {}, patch, bool(cfg.get("z_shift", True)))
    batch = int(cfg.get("batch_size", 1))
    # whole volumes are batched with volumes of their own depth: a batch of two depths costs a forward pass
    # each (measured: 0.25 + 0.41 s a step against 0.17 s for two volumes of 32 slices); patches share one
    depths = np.array([0 if patch else it["image"].shape[-1] for it in items])
    per_epoch = sum(math.ceil(n / batch) for n in np.unique(depths, return_counts=True)[1])
    schedule = TrainConfig(epochs=int(cfg["epochs"]), min_steps=int(cfg.get("min_steps") or 0), batch_size=batch,
                           lr=float(cfg.get("lr", 1e-3)), lr_schedule=cfg.get("lr_schedule", "constant"))
    epochs = epochs_for(schedule, per_epoch * batch)  # as many samples as make per_epoch batches
    model.to(device, memory_format=torch.channels_last_3d).train()  # 1.5x faster steps on CPU (benchmarks/README.md)
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    total_steps, step = epochs * per_epoch, 0
    history = []
    for epoch in range(epochs):
        epoch_seed = stream_seed(seed, "epoch", epoch)
        rng = np.random.default_rng(epoch_seed)
        order = rng.permutation(len(items))
        batches = [same[i:i + batch] for same in (order[depths[order] == d] for d in np.unique(depths))
                   for i in range(0, len(same), batch)]
        if len(set(depths)) > 1:  # the depths take turns at random
            batches = [batches[j] for j in rng.permutation(len(batches))]
        if transform is not None:
            transform.set_random_state(seed=epoch_seed)
        t0, total = time.perf_counter(), 0.0
        for chosen in batches:
            picked = [items[i] for i in chosen]
            if transform is not None:
                picked = [transform(dict(it)) for it in picked]
                picked = [p[0] if isinstance(p, list) else p for p in picked]
            shapes: dict[tuple, list] = {}
            for p in picked:
                shapes.setdefault(np.shape(p["image"]), []).append(p)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(schedule, step, total_steps)
            step += 1
            optimiser.zero_grad()
            loss = 0.0
            for same in shapes.values():  # the batch's loss: each shape's, weighted by its volumes
                x, y, m = (torch.stack([torch.as_tensor(np.asarray(p[k])) for p in same]).to(device)
                           for k in ("image", "label", "mask"))
                x = x.contiguous(memory_format=torch.channels_last_3d)
                loss = loss + masked_loss(model(x), y, m, cfg.get("loss", "dice")) * (len(same) / len(picked))
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(picked)
        history.append({"epoch": epoch + 1, "loss": total / len(items), "seconds": round(time.perf_counter() - t0, 3),
                        "n_samples": len(items)})
    log.info("3D U-Net: %d epochs on %d volumes, last loss %.4f", epochs, len(items), history[-1]["loss"])
    return history


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, device, patch_size=None, sw_batch_size: int = 1,
                   overlap: float = 0.25) -> np.ndarray:
    """Classes (H, W, Z) of one (C, H, W, Z) volume: whole, or by sliding window over ``patch_size``."""
    model.eval()
    z = image.shape[-1]
    x = torch.as_tensor(pad_depth(image.astype(np.float32), padded_depth(z, patch_size[2] if patch_size else None)))[None]
    x = x.to(device)
    if patch_size:
        logits = sliding_window_inference(x, list(patch_size), sw_batch_size, model, overlap=overlap)
    else:
        logits = model(x)
    return logits.argmax(1)[0, ..., :z].cpu().numpy().astype(np.uint8)
