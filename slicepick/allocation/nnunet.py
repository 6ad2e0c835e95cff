"""Export a sparse training set as an nnU-Net v2 raw dataset, with nnU-Net's ignore label.

Layout (nnU-Net v2 documentation, dataset_format.md and ignore_label.md)::

    DatasetXXX_Name/
      dataset.json       channel_names, labels (background 0 ... "ignore" last and highest),
                         numTraining, file_ending; regions_class_order when regions overlap (BraTS)
      imagesTr/<case>_0000.nii.gz ...   the s training volumes, one file per channel
      labelsTr/<case>.nii.gz            classes 0..K-1 on labelled slices, K (= ignore) elsewhere
      imagesTs/<case>_0000.nii.gz ...   our test cases
      labelsTs/<case>.nii.gz            their dense labels (for nnUNetv2_evaluate_folder; not trained on)
      splits_final.json                 one fold: train = val = the s volumes (nnU-Net's fold "all")

Images are the prepared store's volumes (non-blank slices, z-scored, zero-padded) with the
stored spacing, so nnU-Net sees exactly the voxels our models saw; labels are the store's
consecutive class indices.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from slicepick.allocation.experiment import training_volumes
from slicepick.allocation.grid import cells, method_label, methods
from slicepick.allocation.interpolation import region_sets
from slicepick.allocation.volume3d import stack_case
from slicepick.data.prepare import SliceStore, atomic_folder


def dataset_ids(alloc_cfg: dict, seeds, first_id: int) -> dict[tuple, int]:
    """A distinct nnU-Net dataset id per (B, s, seed, selection, allocation, interpolation)."""
    keys = [(b, s, seed, sel, alloc, interp) for b, s in cells(alloc_cfg) for seed in seeds
            for sel, alloc in methods(alloc_cfg) for interp in alloc_cfg["interpolations"]]
    if first_id + len(keys) - 1 > 999:
        raise ValueError(f"allocation.nnunet_first_id {first_id}: {len(keys)} datasets do not fit below id 999")
    return {k: first_id + i for i, k in enumerate(keys)}


def nnunet_labels(meta: dict) -> tuple[dict, list[int] | None]:
    """dataset.json ``labels`` (without ignore) and ``regions_class_order``.

    Overlapping regions (BraTS WT/TC/ET) become nnU-Net regions; each region's class in
    ``regions_class_order`` is the one class of it that no smaller region contains. Disjoint
    regions: plain labels, one per class.
    """
    index_of = {int(v): i for i, v in enumerate(meta["label_values"])}
    regions = {name: sorted(index_of[int(v)] for v in values) for name, values in meta["regions"].items()}
    n_classes = len(meta["label_values"])
    overlapping = any(set(a) & set(b) for (na, a), (nb, b) in
                      ((x, y) for x in regions.items() for y in regions.items()) if na < nb)
    if overlapping:
        ordered = sorted(regions.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        painted = []
        for name, classes in ordered:
            smaller = set().union(*[set(c) for n, c in ordered if set(c) < set(classes)])
            own = sorted(set(classes) - smaller)
            if len(own) != 1:
                break
            painted.append(own[0])
        covered = set().union(*[set(c) for _, c in ordered])
        if len(painted) == len(ordered) and covered == set(range(1, n_classes)):
            return {"background": 0, **{name: classes for name, classes in ordered}}, painted
    names = {i: f"class_{meta['label_values'][i]}" for i in range(1, n_classes)}
    for name, classes in regions.items():
        if len(classes) == 1:
            names[classes[0]] = name
    return {"background": 0, **{names[i]: i for i in range(1, n_classes)}}, None


def _save(volume: np.ndarray, spacing, path: Path, dtype) -> None:
    nib.save(nib.Nifti1Image(np.asarray(volume, dtype), np.diag([*map(float, spacing), 1.0])), path)


def export_dataset(store: SliceStore, chosen: pd.DataFrame, interpolation: str, out_dir: Path, *, dataset_id: int,
                   name: str, channel_names) -> Path:
    """One nnU-Net raw dataset of the selection ``chosen`` (rows: case, position) with ``interpolation``."""
    folder = out_dir / f"Dataset{dataset_id:03d}_{name}"
    with atomic_folder(folder) as tmp:
        _write_dataset(store, chosen, interpolation, tmp, name=name, channel_names=channel_names)
    return folder


def _write_dataset(store: SliceStore, chosen: pd.DataFrame, interpolation: str, tmp: Path, *, name: str,
                   channel_names) -> None:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (tmp / sub).mkdir(parents=True)
    meta = store.meta
    ignore = store.n_classes
    sets = region_sets(meta["regions"], meta["label_values"])
    train_cases = sorted(chosen.case.unique())
    for volume in training_volumes(store, chosen, interpolation, sets, store.n_classes):
        case, image = volume["case"], volume["image"]
        spacing = meta["cases"][case]["spacing_mm"]
        sparse = np.where(volume["labelled"][None, None, :], volume["label"], ignore)
        for c in range(image.shape[0]):
            _save(image[c], spacing, tmp / "imagesTr" / f"{case}_{c:04d}.nii.gz", np.float32)
        _save(sparse, spacing, tmp / "labelsTr" / f"{case}.nii.gz", np.uint8)
    for case in store.case_ids("test"):
        image, label = stack_case(store, case)
        spacing = meta["cases"][case]["spacing_mm"]
        for c in range(image.shape[0]):
            _save(image[c], spacing, tmp / "imagesTs" / f"{case}_{c:04d}.nii.gz", np.float32)
        _save(label, spacing, tmp / "labelsTs" / f"{case}.nii.gz", np.uint8)
    labels, order = nnunet_labels(meta)
    dataset_json = {"channel_names": {str(i): m for i, m in enumerate(channel_names)},
                    "labels": {**labels, "ignore": ignore}, "numTraining": len(train_cases),
                    "file_ending": ".nii.gz",
                    "description": f"slicepick allocation study: {name} (sparse labels, unannotated = ignore)"}
    if order is not None:
        dataset_json["regions_class_order"] = order
    (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    (tmp / "splits_final.json").write_text(json.dumps([{"train": train_cases, "val": train_cases}], indent=1))


def export_cell(store_dir, selections_csv, out_dir, *, dataset: str, budget: int, n_volumes: int, seed: int,
                alloc_cfg: dict, seeds, first_id: int) -> list[Path]:
    """Every method x interpolation of one cell and seed as nnU-Net raw datasets under ``out_dir``."""
    store = SliceStore(store_dir)
    plan = pd.read_csv(selections_csv)
    plan = plan[(plan.budget == budget) & (plan.n_volumes == n_volumes) & (plan.seed == seed)]
    ids = dataset_ids(alloc_cfg, seeds, first_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for selection, allocation in methods(alloc_cfg):
        chosen = plan[(plan.selection == selection) & (plan.allocation == allocation)]
        for interpolation in alloc_cfg["interpolations"]:
            name = f"{dataset}_B{budget}_s{n_volumes}_seed{seed}_{method_label(selection, allocation)}_{interpolation}"
            written.append(export_dataset(store, chosen, interpolation, out_dir,
                                          dataset_id=ids[(budget, n_volumes, seed, selection, allocation, interpolation)],
                                          name=name, channel_names=store.meta["modalities"]))
    return written
