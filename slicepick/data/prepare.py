"""Preparation: raw volumes -> memory-mapped slice store + index + seeded case split.

The store is the contract every later step reads (like nnU-Net's preprocessed folder):

``images.f32``  raw float32, shape ``(N, C, H, W)``, z-scored per modality in the brain mask
``labels.u8``   raw uint8, shape ``(N, H, W)``, class indices 0..K-1 (position in ``label_values``)
``index.csv``   sample_id, case, z (slice index in the original volume), subset
``split.csv``   case, subset (train / test), seeded, by case never by slice
``meta.json``   shapes, modalities, label values, regions, per-case geometry for evaluation

Volumes are streamed one at a time, so memory stays flat as the dataset grows.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from slicepick.data.readers import CaseFiles, DatasetError, load_case, read_shape
from slicepick.seeding import rng_for

log = logging.getLogger(__name__)


def split_cases(case_ids, test_fraction: float, seed: int) -> pd.DataFrame:
    """Seeded case-level split; at least one case on each side."""
    case_ids = sorted(case_ids)
    if len(case_ids) < 2:
        raise DatasetError(f"split: need at least 2 cases for a train/test split, got {len(case_ids)}")
    n_test = min(max(1, int(round(test_fraction * len(case_ids)))), len(case_ids) - 1)
    order = rng_for(seed, "split").permutation(len(case_ids))
    test = {case_ids[i] for i in order[:n_test]}
    return pd.DataFrame({"case": case_ids, "subset": ["test" if c in test else "train" for c in case_ids]})


def zscore_in_mask(volume: np.ndarray) -> np.ndarray:
    """Z-score one modality inside its non-zero (brain) mask; background stays 0."""
    mask = volume != 0
    out = np.zeros_like(volume, dtype=np.float32)
    if mask.any():
        values = volume[mask]
        out[mask] = (values - values.mean()) / (values.std() + 1e-8)
    return out


def nonblank_range(image: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the axial slices between the blank ends (all modalities zero)."""
    occupied = np.flatnonzero(np.any(image != 0, axis=(0, 1, 2)))
    if occupied.size == 0:
        return 0, 0
    return int(occupied[0]), int(occupied[-1]) + 1


def _pad_offsets(shape_xy, target_xy):
    return [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(shape_xy, target_xy)]


def _resize_slices(images: np.ndarray, labels: np.ndarray, size_hw) -> tuple[np.ndarray, np.ndarray]:
    """In-plane resize of (Z, C, H, W) images (bilinear) and (Z, H, W) labels (nearest)."""
    img = F.interpolate(torch.from_numpy(images), size=tuple(size_hw), mode="bilinear", align_corners=False)
    lab = F.interpolate(torch.from_numpy(labels[:, None].astype(np.float32)), size=tuple(size_hw), mode="nearest")
    return img.numpy(), lab[:, 0].numpy().astype(np.uint8)


def labels_to_classes(label: np.ndarray, label_values, case_id: str, path) -> np.ndarray:
    lut = {int(v): i for i, v in enumerate(label_values)}
    found = np.unique(label)
    unknown = [int(v) for v in found if int(v) not in lut]
    if unknown:
        raise DatasetError(f"case {case_id}: {path}: label values {unknown} not in the declared set {list(label_values)}")
    out = np.zeros(label.shape, np.uint8)
    for v in found:
        out[label == v] = lut[int(v)]
    return out


class SliceStore:
    """Read-only view of a prepared dataset (memory-mapped)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        n, c, h, w = self.meta["images_shape"]
        self.images = np.memmap(self.folder / "images.f32", dtype=np.float32, mode="r", shape=(n, c, h, w))
        self.labels = np.memmap(self.folder / "labels.u8", dtype=np.uint8, mode="r", shape=(n, h, w))
        self.index = pd.read_csv(self.folder / "index.csv")

    @property
    def n_classes(self) -> int:
        return len(self.meta["label_values"])

    @property
    def n_channels(self) -> int:
        return self.meta["images_shape"][1]

    @property
    def pool_ids(self) -> np.ndarray:
        """Sample ids of every slice of the training cases: the pool annotation draws from."""
        return self.index.loc[self.index.subset == "train", "sample_id"].to_numpy()

    def case_ids(self, subset: str) -> list[str]:
        return sorted(self.index.loc[self.index.subset == subset, "case"].unique())

    def case_samples(self, case_id: str) -> np.ndarray:
        """Sample ids of one case, ordered by slice (z)."""
        rows = self.index[self.index.case == case_id].sort_values("z")
        return rows.sample_id.to_numpy()


def prepare_dataset(cases: list[CaseFiles], out_dir: str | Path, *, modalities, label_values,
                    regions: dict, test_fraction: float, split_seed: int, resize=None) -> None:
    """Stream ``cases`` into a slice store at ``out_dir``; written atomically (temp folder, rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_store(cases, tmp, modalities, label_values, regions, test_fraction, split_seed, resize)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_store(cases, folder: Path, modalities, label_values, regions, test_fraction, split_seed, resize):
    split = split_cases([c.case_id for c in cases], test_fraction, split_seed)
    subset_of = dict(zip(split.case, split.subset))
    shapes = [read_shape(c) for c in cases]
    padded_hw = [max(s[0] for s in shapes), max(s[1] for s in shapes)]
    out_hw = list(resize) if resize else padded_hw
    rows, case_meta = [], {}
    n = 0
    with open(folder / "images.f32", "wb") as f_img, open(folder / "labels.u8", "wb") as f_lab:
        for i, case in enumerate(cases):
            loaded = load_case(case)
            if loaded.label is None:
                raise DatasetError(f"case {case.case_id}: label file missing")
            classes = labels_to_classes(loaded.label, label_values, case.case_id, case.label)
            image = np.stack([zscore_in_mask(v) for v in loaded.image])
            z0, z1 = nonblank_range(loaded.image)
            if z1 == z0:
                raise DatasetError(f"case {case.case_id}: {case.images[0]}: all-zero image")
            pads = _pad_offsets(image.shape[1:3], padded_hw)
            image = np.pad(image[..., z0:z1], [(0, 0), *pads, (0, 0)])
            classes = np.pad(classes[..., z0:z1], [*pads, (0, 0)])
            # (C, H, W, Z) -> (Z, C, H, W) slices
            slices = np.ascontiguousarray(np.moveaxis(image, -1, 0))
            slice_labels = np.ascontiguousarray(np.moveaxis(classes, -1, 0))
            if resize:
                slices, slice_labels = _resize_slices(slices, slice_labels, out_hw)
            f_img.write(slices.astype(np.float32).tobytes())
            f_lab.write(slice_labels.astype(np.uint8).tobytes())
            sx, sy, sz = loaded.spacing_mm
            case_meta[case.case_id] = {
                "subset": subset_of[case.case_id],
                "original_shape": list(loaded.image.shape[1:]),
                "z_range": [z0, z1],
                "pad": [list(p) for p in pads],
                "padded_hw": padded_hw,
                # in-plane spacing of the stored slices (changes with resize), then slice spacing
                "spacing_mm": [sx * padded_hw[0] / out_hw[0], sy * padded_hw[1] / out_hw[1], sz],
                "affine": loaded.affine.tolist(),
            }
            for z in range(z0, z1):
                rows.append((n, case.case_id, z, subset_of[case.case_id]))
                n += 1
            log.info("prepared %s (%d/%d): %d slices, subset %s", case.case_id, i + 1, len(cases), z1 - z0,
                     subset_of[case.case_id])
    pd.DataFrame(rows, columns=["sample_id", "case", "z", "subset"]).to_csv(folder / "index.csv", index=False)
    split.to_csv(folder / "split.csv", index=False)
    meta = {
        "images_shape": [n, len(modalities), *out_hw],
        "modalities": list(modalities),
        "label_values": [int(v) for v in label_values],
        "regions": {k: [int(v) for v in vals] for k, vals in regions.items()},
        "cases": case_meta,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
