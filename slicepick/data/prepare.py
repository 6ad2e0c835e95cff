"""Preparation: raw volumes -> memory-mapped slice store + index + seeded case split.

The store is the contract every later step reads (like nnU-Net's preprocessed folder):

``images.f32``  raw float32, shape ``(N, C, H, W)``, z-scored per modality in the brain mask
``labels.u8``   raw uint8, shape ``(N, H, W)``, class indices 0..K-1 (position in ``label_values``)
``index.csv``   sample_id, case, z (slice index in the original volume), subset
``split.csv``   case, subset (train / test), seeded, by case never by slice
``test_labels/<case>.npy``  uint8 class map of each test case on its own (RAS, not resized) grid: the
                reference that Dice and HD95 are computed against (:mod:`slicepick.evaluation`)
``meta.json``   shapes, modalities, label values, regions, per-case geometry (the input's affine,
                shape and orientation: :mod:`slicepick.data.geometry` maps store space back to the
                input's grid), and ``store_sha256``: a checksum of the files above
``bad_cases.csv`` case, file, reason: the cases left out (``dataset.on_bad_case: skip``); empty otherwise

``store_sha256`` is computed once, from the bytes as they are written (images, labels, test labels,
index, split), never by reading the store again: a checkpoint's resume fingerprint uses it
(:func:`slicepick.checksums.resume_fingerprint`) without hashing tens of GB per job.

Every case is validated first (:mod:`slicepick.data.validate`); nothing is written unless that
passes. Volumes are streamed one at a time, so memory stays flat as the dataset grows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from slicepick.data.labels import LabelSpec
from slicepick.data.store import SliceStore  # noqa: F401  (re-exported: the store's reader)
from slicepick.data.readers import CaseFiles, DatasetError, find_cases, load_case, read_shape, resolve_dataset
from slicepick.data.validate import Problem, validate_cases
from slicepick.seeding import rng_for

log = logging.getLogger(__name__)

BAD_CASE_POLICIES = ("fail", "skip")  # dataset.on_bad_case
PAD_MULTIPLE = 16  # the common in-plane size is a multiple of this: the U-Net pools four times


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


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_offsets(shape_xy, target_xy):
    return [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(shape_xy, target_xy)]


def _resize_slices(images: np.ndarray, labels: np.ndarray, size_hw) -> tuple[np.ndarray, np.ndarray]:
    """In-plane resize of (Z, C, H, W) images (bilinear) and (Z, H, W) labels (nearest)."""
    img = F.interpolate(torch.from_numpy(images), size=tuple(size_hw), mode="bilinear", align_corners=False)
    lab = F.interpolate(torch.from_numpy(labels[:, None].astype(np.float32)), size=tuple(size_hw), mode="nearest")
    return img.numpy(), lab[:, 0].numpy().astype(np.uint8)


@contextmanager
def atomic_folder(out_dir: str | Path):
    """A fresh temporary sibling of ``out_dir`` to write into: it replaces ``out_dir`` when the block
    ends, and is removed on any error, so a reader never sees a half-written folder."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_dataset(cases: list[CaseFiles], out_dir: str | Path, *, modalities, label_values=None, regions=None,
                    label_groups=None, test_fraction: float, split_seed: int, resize=None,
                    on_bad_case: str = "fail") -> list[Problem]:
    """Validate every case, then stream the good ones into a slice store at ``out_dir``.

    Labels are declared by ``label_values`` and ``regions``, or by ``label_groups`` (see
    :mod:`slicepick.data.labels`). Validation reads every file before anything is written. With
    ``on_bad_case="fail"`` any bad case raises :class:`DatasetError` listing every problem, one
    line each, and nothing is written; with ``"skip"`` bad cases are left out and listed in
    ``bad_cases.csv`` of the store. The store is written atomically (temp folder, then rename).
    Returns the problems found.
    """
    if on_bad_case not in BAD_CASE_POLICIES:
        raise ValueError(f"on_bad_case '{on_bad_case}' is not one of {list(BAD_CASE_POLICIES)}")
    if label_groups:
        labels = LabelSpec.from_groups(label_groups)
        if label_values is not None:
            log.info("dataset.label_groups declares the classes: dataset.label_values and regions are not used")
    elif label_values is None or regions is None:
        raise DatasetError("dataset: declare label_values and regions, or label_groups")
    else:
        labels = LabelSpec.from_values(label_values, regions)
    good, problems = validate_cases(cases, modalities, labels.raw_values)
    lines = [str(p) for p in problems]
    n_bad = len(cases) - len(good)
    if problems and on_bad_case == "fail":
        raise DatasetError("\n".join(lines + [f"{n_bad} of {len(cases)} cases failed validation; nothing was written "
                                              "(dataset.on_bad_case: skip leaves bad cases out instead)"]))
    for line in lines:
        log.warning("skipping bad case: %s", line)
    if len(good) < 2:
        raise DatasetError("\n".join(lines + [f"{len(good)} good case(s) of {len(cases)}: need at least 2 "
                                              "for a train/test split; nothing was written"]))

    with atomic_folder(out_dir) as tmp:
        _write_store(good, tmp, modalities, labels, test_fraction, split_seed, resize)
        pd.DataFrame([(p.case_id, p.file, p.reason) for p in problems],
                     columns=["case", "file", "reason"]).to_csv(tmp / "bad_cases.csv", index=False)
    log.info("prepared %d cases into %s (%d bad case(s) skipped)", len(good), out_dir, n_bad)
    return problems


def prepare_from_config(data_root: str | Path, dataset_cfg: dict, out_dir: str | Path) -> list[Problem]:
    """Find, validate and prepare the cases of ``data_root`` as the config's ``dataset`` block says
    (with the schema's defaults filled in). Raises :class:`DatasetError` on bad input."""
    layout = "brats" if dataset_cfg["layout"] == "synthetic" else dataset_cfg["layout"]  # generated as BraTS
    ds = resolve_dataset(layout, data_root, dataset_cfg)
    return prepare_dataset(find_cases(layout, data_root, ds), out_dir, modalities=ds["modalities"],
                           label_values=ds.get("label_values"), regions=ds.get("regions"),
                           label_groups=ds.get("label_groups"), test_fraction=ds["test_fraction"],
                           split_seed=ds["split_seed"], resize=ds["resize"], on_bad_case=ds["on_bad_case"])


def _case_slices(image: np.ndarray, z0: int, z1: int, pads, padded_hw) -> np.ndarray:
    """(C, X, Y, Z) raw image -> (Z1 - Z0, C, H, W) z-scored, zero-padded slices, one modality at a
    time so that memory holds the case about twice, not once per processing step."""
    (px, _), (py, _) = pads
    x, y = image.shape[1:3]
    out = np.zeros((z1 - z0, image.shape[0], *padded_hw), np.float32)
    for c in range(image.shape[0]):
        out[:, c, px:px + x, py:py + y] = np.moveaxis(zscore_in_mask(image[c])[..., z0:z1], -1, 0)
    return out


def _case_label_slices(classes: np.ndarray, z0: int, z1: int, pads, padded_hw) -> np.ndarray:
    """(X, Y, Z) class map -> (Z1 - Z0, H, W) uint8, zero-padded like the image."""
    (px, _), (py, _) = pads
    x, y = classes.shape[:2]
    out = np.zeros((z1 - z0, *padded_hw), np.uint8)
    out[:, px:px + x, py:py + y] = np.moveaxis(classes[..., z0:z1], -1, 0)
    return out


def _write_store(cases, folder: Path, modalities, labels: LabelSpec, test_fraction, split_seed, resize):
    split = split_cases([c.case_id for c in cases], test_fraction, split_seed)
    subset_of = dict(zip(split.case, split.subset))
    shapes = [read_shape(c) for c in cases]
    padded_hw = [_round_up(max(s[axis] for s in shapes), PAD_MULTIPLE) for axis in (0, 1)]
    out_hw = list(resize) if resize else padded_hw
    rows, case_meta = [], {}
    n = 0
    # one checksum per file, fed with the bytes as they are written: the store is never read back
    digests = {name: hashlib.sha256() for name in ("images", "labels", "test_labels", "index", "split")}
    (folder / "test_labels").mkdir()
    with open(folder / "images.f32", "wb") as f_img, open(folder / "labels.u8", "wb") as f_lab:
        for i, case in enumerate(cases):
            loaded = load_case(case)
            z0, z1 = nonblank_range(loaded.image)
            pads = _pad_offsets(loaded.image.shape[1:3], padded_hw)
            classes = labels.to_classes(loaded.label)
            slices = _case_slices(loaded.image, z0, z1, pads, padded_hw)
            slice_labels = _case_label_slices(classes, z0, z1, pads, padded_hw)
            if resize:
                slices, slice_labels = _resize_slices(slices, slice_labels, out_hw)
            for f, key, array in ((f_img, "images", np.ascontiguousarray(slices, np.float32)),
                                  (f_lab, "labels", np.ascontiguousarray(slice_labels, np.uint8))):
                f.write(memoryview(array).cast("B"))
                digests[key].update(memoryview(array).cast("B"))
            if subset_of[case.case_id] == "test":
                reference = np.ascontiguousarray(classes, np.uint8)
                np.save(folder / "test_labels" / f"{case.case_id}.npy", reference)
                digests["test_labels"].update(case.case_id.encode())
                digests["test_labels"].update(memoryview(reference).cast("B"))
            sx, sy, sz = loaded.spacing_mm
            case_meta[case.case_id] = {
                "subset": subset_of[case.case_id],
                "original_shape": list(loaded.image.shape[1:]),  # (X, Y, Z) of the RAS grid
                "z_range": [z0, z1],
                "pad": [list(p) for p in pads],
                "padded_hw": padded_hw,
                # in-plane spacing of the stored slices (changes with resize), then slice spacing
                "spacing_mm": [sx * padded_hw[0] / out_hw[0], sy * padded_hw[1] / out_hw[1], sz],
                "original_spacing_mm": [sx, sy, sz],  # of the RAS grid: scores are computed there
                "affine": loaded.affine.tolist(),  # RAS: the geometry original_shape is on
                # the input files as stored: slicepick.data.geometry maps predictions back onto them
                "input_affine": loaded.input_affine.tolist(),
                "input_shape": [int(loaded.image.shape[1 + int(axis)]) for axis in loaded.input_ornt[:, 0]],
                "input_ornt": loaded.input_ornt.tolist(),
            }
            for z in range(z0, z1):
                rows.append((n, case.case_id, z, subset_of[case.case_id]))
                n += 1
            log.info("prepared %s (%d/%d): %d slices, subset %s", case.case_id, i + 1, len(cases), z1 - z0,
                     subset_of[case.case_id])
            del loaded, classes, slices, slice_labels  # freed before the next case is read: one case in memory
    index_csv = pd.DataFrame(rows, columns=["sample_id", "case", "z", "subset"]).to_csv(index=False)
    split_csv = split.to_csv(index=False)
    for name, text in (("index", index_csv), ("split", split_csv)):
        (folder / f"{name}.csv").write_text(text)
        digests[name].update(text.encode())
    meta = {
        "images_shape": [n, len(modalities), *out_hw],
        "modalities": list(modalities),
        **labels.meta(),
        "cases": case_meta,
        "store_sha256": hashlib.sha256("".join(f"{k}:{d.hexdigest()}\n" for k, d in digests.items())
                                       .encode()).hexdigest(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
