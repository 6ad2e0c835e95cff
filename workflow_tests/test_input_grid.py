"""Predictions land on the input's own voxel grid, and scores are computed on the original grid.

Real BraTS files are stored LPS (affine diag(-1, -1, 1)); the readers reorient every volume to RAS.
A stub predictor that returns the store's ground truth must give back, voxel for voxel, the case's
own label file: same shape, same affine, same raw label values.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import slicepick.evaluation as evaluation
from slicepick.data.geometry import to_input_grid
from slicepick.data.prepare import SliceStore, prepare_dataset
from slicepick.data.readers import find_cases
from slicepick.evaluation import dice_hd95, evaluate_model, save_predictions

MODALITIES = ["t1", "t1ce", "t2", "flair"]
LABELS = {"label_values": [0, 1, 2, 4], "regions": {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}}


def lps_affine():
    """As real BraTS files: stored axes along L, P, S (spacing 1, 1.2, 2 mm), an offset origin."""
    affine = np.diag([-1.0, -1.2, 2.0, 1.0])
    affine[:3, 3] = [120.0, 130.0, -40.0]
    return affine


def sagittal_affine():
    """Stored axes along S, L, A: a reorientation that also permutes the axes."""
    return np.array([[0.0, -1.0, 0.0, 20.0], [0.0, 0.0, 1.2, -30.0], [2.0, 0.0, 0.0, 5.0], [0, 0, 0, 1]])


# name -> (affine, stored shape, stored axis along S: the axial axis whose end slices are blank)
ORIENTATIONS = {"LPS": (lps_affine(), (21, 26, 12), 2), "SLA": (sagittal_affine(), (12, 21, 26), 0)}


def box(shape, lo, hi):
    """Mask of the box between fractions ``lo`` and ``hi`` of each axis: off-centre, so asymmetric."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(int(a * s), int(b * s)) for a, b, s in zip(lo, hi, shape))] = True
    return mask


def write_dataset(root: Path, orientation: str, n_cases: int = 4) -> None:
    affine, shape, axial = ORIENTATIONS[orientation]
    for i in range(n_cases):
        rng = np.random.default_rng(i)
        cid = f"BraTS_{i:03d}"
        label = np.zeros(shape, np.uint8)
        shift = 0.03 * i
        label[box(shape, (0.15 + shift, 0.2, 0.25), (0.6 + shift, 0.75, 0.7))] = 2
        label[box(shape, (0.25 + shift, 0.3, 0.35), (0.45 + shift, 0.55, 0.55))] = 1
        label[box(shape, (0.3 + shift, 0.5, 0.4), (0.45 + shift, 0.7, 0.55))] = 4
        brain = np.ones(shape, bool)
        ends = [slice(None)] * 3
        for end in (0, -1):  # blank first and last axial slices: the store crops them
            ends[axial] = end
            brain[tuple(ends)] = False
        (root / cid).mkdir(parents=True)
        for m, name in enumerate(MODALITIES):
            image = np.where(brain, rng.uniform(0.5, 1.5, shape) + 0.3 * label + 0.1 * m, 0).astype(np.float32)
            nib.save(nib.Nifti1Image(image, affine), root / cid / f"{cid}_{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / cid / f"{cid}_seg.nii.gz")


def prepared(tmp_path: Path, orientation: str, resize=None) -> tuple[Path, SliceStore]:
    data = tmp_path / "data"
    write_dataset(data, orientation)
    out = tmp_path / "prepared"
    prepare_dataset(find_cases("brats", data, {"modalities": MODALITIES}), out, modalities=MODALITIES, **LABELS,
                    test_fraction=0.5, split_seed=0, resize=resize)
    return data, SliceStore(out)


@pytest.fixture
def ground_truth_predictor(monkeypatch):
    """The model's class maps replaced by the store's ground truth of the same samples."""
    monkeypatch.setattr(evaluation, "predict_classes",
                        lambda model, store, ids, device: np.array(store.labels[np.asarray(ids)]))


def seg_of(data: Path, case: str) -> nib.Nifti1Image:
    return nib.load(data / case / f"{case}_seg.nii.gz")


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize("resize", [None, [64, 64]])
def test_ground_truth_prediction_is_the_input_label_file(orientation, resize, tmp_path, ground_truth_predictor):
    data, store = prepared(tmp_path, orientation, resize)
    written = save_predictions(None, store, "cpu", tmp_path / "predictions")
    assert [p.name for p in written] == [f"{c}_pred.nii.gz" for c in store.case_ids("test")]
    for path, case in zip(written, store.case_ids("test")):
        seg, pred = seg_of(data, case), nib.load(path)
        ref, out = np.asarray(seg.dataobj), np.asarray(pred.dataobj)
        for axis in range(3):  # a prediction left in RAS, or flipped on any axis, could not match
            assert not np.array_equal(ref, np.flip(ref, axis))
        assert pred.shape == seg.shape and np.allclose(pred.affine, seg.affine)
        assert np.issubdtype(out.dtype, np.integer) and set(np.unique(out)) == {0, 1, 2, 4}
        assert np.array_equal(out, ref)
        for values in LABELS["regions"].values():  # voxel-wise Dice against the case's own label file
            assert dice_hd95(np.isin(out, values), np.isin(ref, values), seg.header.get_zooms())[0] == 1.0


def test_to_input_grid_gives_class_indices_on_the_input_voxels(tmp_path):
    data, store = prepared(tmp_path, "SLA")
    case = store.case_ids("train")[0]
    classes = to_input_grid(np.moveaxis(np.array(store.labels[store.case_samples(case)]), 0, -1),
                            store.meta["cases"][case])
    raw = np.asarray(seg_of(data, case).dataobj)
    assert classes.shape == raw.shape and np.array_equal(np.array([0, 1, 2, 4])[classes], raw)


def test_scores_are_computed_on_the_original_grid(tmp_path, ground_truth_predictor):
    # exact resize (x2): the ground truth maps back exactly; Dice 1 and HD 0 on the original grid
    _, store = prepared(tmp_path / "exact", "LPS", resize=[64, 64])
    scores = evaluate_model(None, store, "cpu")
    assert len(scores) == 3 * len(store.case_ids("test"))
    assert (scores.dice == 1.0).all() and (scores.hd95 == 0.0).all()
    # a resize by 1.5 loses voxels on the way back: on the resized grid the stored ground truth
    # would score a perfect 1, on the original grid it cannot
    _, store = prepared(tmp_path / "lossy", "LPS", resize=[48, 48])
    scores = evaluate_model(None, store, "cpu")
    assert scores.dice.min() < 1.0 and scores.dice.min() > 0.5 and scores.hd95.max() > 0.0
