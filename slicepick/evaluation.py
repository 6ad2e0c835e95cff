"""Evaluation: predict each test volume slice by slice, stack to 3D, score per region.

Scores are computed on each case's original grid (its input voxels, in RAS axis order; Dice and
distances do not depend on the axis order), against the label map as read from the input, never
against the store's resized copy: the prediction is mapped back first (resize undone,
:mod:`slicepick.data.geometry`), and distances use the input's voxel spacing.

Dice and HD95 (95th-percentile Hausdorff distance, millimetres) come from MONAI. MONAI leaves
empty masks undefined (NaN); we follow the BraTS challenge convention so that means over cases
stay honest:

=================  ======  =========================================
reference / pred   Dice    HD95 (mm)
=================  ======  =========================================
both empty         1.0     0.0
one of them empty  0.0     the volume's diagonal (the worst possible)
both non-empty     MONAI   MONAI, with the input's voxel spacing 
=================  ======  =========================================
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from slicepick.data.geometry import label_image, store_to_ras
from slicepick.training import predict_classes


def region_masks(classes: np.ndarray, regions: dict, label_values) -> dict[str, np.ndarray]:
    """Binary mask per region; a region is a set of raw label values (BraTS WT = {1, 2, 4})."""
    index_of = {int(v): i for i, v in enumerate(label_values)}
    return {name: np.isin(classes, [index_of[int(v)] for v in values]) for name, values in regions.items()}


def dice_hd95(pred: np.ndarray, ref: np.ndarray, spacing_mm, percentile: float = 95.0) -> tuple[float, float]:
    """Dice and Hausdorff distance (percentile, mm) of two binary masks of any dimension."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if not ref.any() and not pred.any():
        return 1.0, 0.0
    if not ref.any() or not pred.any():
        diagonal = float(np.linalg.norm(np.array(ref.shape) * np.asarray(spacing_mm, float)))
        return 0.0, diagonal
    p = torch.as_tensor(pred[None, None], dtype=torch.float32)
    r = torch.as_tensor(ref[None, None], dtype=torch.float32)
    dice = float(compute_dice(p, r, include_background=True)[0, 0])
    hd = float(compute_hausdorff_distance(p, r, include_background=True, percentile=percentile,
                                          spacing=[float(s) for s in spacing_mm])[0, 0])
    return dice, hd


DEGENERATE_BACKGROUND_SHARE = 0.5


def is_degenerate(foreground_on_background: float, predicted_foreground: int) -> bool:
    """A model that has not learned: foreground on more than half of the test set's background
    pixels (the "everything is tumour" start), or no foreground at all."""
    return foreground_on_background > DEGENERATE_BACKGROUND_SHARE or predicted_foreground == 0


class ForegroundTally:
    """What ``is_degenerate`` looks at, summed over the test cases: background pixels, predicted
    foreground on them, and predicted foreground in all."""

    def __init__(self):
        self.background_px = self.foreground_on_background = self.predicted_foreground = 0

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        self.background_px += int((ref == 0).sum())
        self.foreground_on_background += int(((pred != 0) & (ref == 0)).sum())
        self.predicted_foreground += int((pred != 0).sum())

    @property
    def background_share(self) -> float:
        return self.foreground_on_background / max(self.background_px, 1)

    @property
    def degenerate(self) -> bool:
        return is_degenerate(self.background_share, self.predicted_foreground)


def predict_volume(model, store, case: str, device) -> np.ndarray:
    """Argmax class volume ``(H, W, Z')`` of one case in store space (its stored slices, in order)."""
    return np.moveaxis(predict_classes(model, store, store.case_samples(case), device), 0, -1)


def evaluate_model(model, store, device, percentile: float = 95.0) -> pd.DataFrame:
    """Per test case and region: Dice and HD (mm) of the 3D stack of 2D predictions, on the case's
    original grid (see the module docstring).

    Every row also carries the model's ``degenerate`` flag (see ``is_degenerate``), with the
    numbers behind it over the whole test set (``foreground_on_background``, ``predicted_foreground``).
    """
    rows, tally = [], ForegroundTally()
    meta = store.meta
    for case in store.case_ids("test"):
        case_meta = meta["cases"][case]
        pred = store_to_ras(predict_volume(model, store, case, device), case_meta)
        ref = store.reference_labels(case)
        spacing = case_meta["original_spacing_mm"]
        tally.add(pred, ref)
        pred_regions = region_masks(pred, meta["regions"], meta["label_values"])
        ref_regions = region_masks(ref, meta["regions"], meta["label_values"])
        for region in meta["regions"]:
            dice, hd = dice_hd95(pred_regions[region], ref_regions[region], spacing, percentile)
            rows.append({"case": case, "region": region, "dice": dice, "hd95": hd})
    scores = pd.DataFrame(rows)
    scores["degenerate"] = tally.degenerate
    scores["foreground_on_background"] = tally.background_share
    scores["predicted_foreground"] = tally.predicted_foreground
    return scores


def save_predictions(model, store, device, out_dir: str | Path) -> list[Path]:
    """Each test case's prediction as an integer NIfTI label map in the dataset's raw label values,
    on the input's own voxel grid with the input's affine (``<case>_pred.nii.gz``): it overlays the
    case's image and label files voxel for voxel, in any viewer or evaluation tool."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for case in store.case_ids("test"):
        image = label_image(predict_volume(model, store, case, device), store.meta["cases"][case],
                            store.meta["label_values"])
        path = out_dir / f"{case}_pred.nii.gz"
        tmp = out_dir / f".{case}_pred.tmp.nii.gz"
        nib.save(image, tmp)
        tmp.replace(path)
        written.append(path)
    return written
