"""Filling label maps between annotated slices of a volume (training labels only, never test labels).

- ``none``: only the annotated slices are labelled.
- ``shape_based`` (ours; the paper does not say which it used): per region, the in-plane signed
  distance map (negative inside, millimetres) of the two consecutive annotated slices around a
  slice is interpolated linearly in z, and the region is where it is negative. Regions are the
  evaluated regions (BraTS WT, TC, ET) plus one per class; nesting is kept by never letting a
  region leave a region that contains it, and each voxel takes the class whose region pattern the
  distances satisfy best. A region absent from an annotated slice counts as far away (the
  slice's diagonal), so it shrinks to nothing towards that slice. Only gaps between two annotated
  slices that both show foreground are labelled (``fill_between``); nothing is extrapolated.
- ``morphological``: ITK's MorphologicalContourInterpolator (Albu et al. 2008; 3D Slicer's "Fill
  between slices"), run on each gap between two consecutive annotated slices separately: ITK
  takes an empty slice for an unannotated one, so a whole volume would bridge over annotated
  slices that show no foreground. A label present on only one side of a gap is not carried into it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

INTERPOLATIONS = ("none", "shape_based", "morphological")
ITK_DIST = "itk-morphologicalcontourinterpolation"
ITK_PIN = f"{ITK_DIST}==2.1.2"
class MissingDependency(RuntimeError):
    pass


ITK_MISSING = (f"interpolation 'morphological' needs ITK's contour interpolation: pip install {ITK_PIN} "
               "(make test installs it; so does the conda env envs/torch.yaml)")


def region_sets(regions: dict, label_values) -> list[frozenset[int]]:
    """Class-index sets to interpolate: each evaluated region and each foreground class, no repeats."""
    index_of = {int(v): i for i, v in enumerate(label_values)}
    sets = [frozenset(index_of[int(v)] for v in values) for values in regions.values()]
    sets += [frozenset([c]) for c in range(1, len(label_values))]
    return list(dict.fromkeys(s for s in sets if s))


def signed_distance(mask: np.ndarray, spacing_hw) -> np.ndarray:
    """Signed distance (mm) to the mask's boundary: negative inside, positive outside."""
    mask = np.asarray(mask, bool)
    far = float(np.linalg.norm(np.array(mask.shape) * np.asarray(spacing_hw, float)))
    if not mask.any():
        return np.full(mask.shape, far, np.float32)
    if mask.all():
        return np.full(mask.shape, -far, np.float32)
    outside = distance_transform_edt(~mask, sampling=spacing_hw)
    inside = distance_transform_edt(mask, sampling=spacing_hw)
    return (outside - inside).astype(np.float32)


def _classes_from_distances(sd: np.ndarray, sets: list[frozenset[int]], n_classes: int) -> np.ndarray:
    """(R, H, W) region distances -> (H, W) classes: nesting enforced, then the best-satisfied class."""
    sd = sd.copy()
    order = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    for i in order:  # parents (larger sets) first, so a chain of containments propagates
        for j in order:
            if sets[i] < sets[j]:
                sd[i] = np.maximum(sd[i], sd[j])
    member = np.array([[c in s for s in sets] for c in range(n_classes)])  # (K, R)
    # a class's violation: how far a voxel is outside a region it needs, or inside one it must not be in
    score = np.where(member[:, :, None, None], sd[None], -sd[None]).max(1)  # (K, H, W)
    return score.argmin(0).astype(np.uint8)


def shape_based(labels: np.ndarray, positions, sets: list[frozenset[int]], n_classes: int,
                spacing_hw) -> np.ndarray:
    """Labels (Z, H, W) filled between consecutive annotated ``positions``; other slices left 0."""
    positions = np.sort(np.asarray(positions, int))
    out = np.zeros_like(labels, np.uint8)
    distances = {int(z): np.stack([signed_distance(np.isin(labels[z], list(s)), spacing_hw) for s in sets])
                 for z in positions}
    for za, zb in zip(positions[:-1], positions[1:]):
        for z in range(za + 1, zb):
            t = (z - za) / (zb - za)
            sd = (1 - t) * distances[int(za)] + t * distances[int(zb)]
            out[z] = _classes_from_distances(sd, sets, n_classes)
    out[positions] = labels[positions]
    return out


def _morphological_here(labels: np.ndarray, positions, spacing_zyx) -> np.ndarray:
    """ITK's interpolation in this process (the child of :func:`morphological_many`)."""
    import itk  # 1.5 GB of wheels: imported only in the child process that interpolates

    positions = np.sort(np.asarray(positions, int))
    out = np.zeros_like(labels, np.uint8)
    for za, zb in zip(positions[:-1], positions[1:]):
        if zb - za < 2 or not (labels[za].any() and labels[zb].any()):
            continue  # no gap, or nothing to interpolate between (one side has no foreground)
        gap = np.zeros((zb - za + 1, *labels.shape[1:]), np.uint8)
        gap[0], gap[-1] = labels[za], labels[zb]
        image = itk.image_from_array(gap)  # array (z, y, x) -> ITK index (x, y, z)
        image.SetSpacing([float(spacing_zyx[2]), float(spacing_zyx[1]), float(spacing_zyx[0])])
        interpolator = itk.MorphologicalContourInterpolator.New(image)
        interpolator.SetAxis(2)  # between slices along z only
        interpolator.Update()
        out[za + 1:zb] = itk.array_from_image(interpolator.GetOutput())[1:-1]
    out[positions] = labels[positions]
    return out


def morphological_many(items) -> list[np.ndarray]:
    """ITK's morphological interpolation of several volumes, in one child process.

    ``items``: (labels (Z, H, W), annotated positions, spacing (z, y, x)) per volume. ITK runs in a
    separate Python (``python -m slicepick.allocation.itk_worker``) that never imports torch: with
    both loaded in one process, glibc aborted at exit (``malloc_consolidate(): unaligned fastbin
    chunk``) in about one job in three, after the job had written its outputs. The child hands its
    result back through a file it renames into place, so a result is either whole or absent.
    """
    require_itk()
    items = list(items)
    if not items:
        return []
    package_root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="slicepick-itk-") as tmp:
        request, result = Path(tmp) / "request.npz", Path(tmp) / "result.npz"
        arrays = {}
        for i, (labels, positions, spacing) in enumerate(items):  # only the annotated slices travel
            positions = np.sort(np.asarray(positions, int))
            arrays[f"annotated{i}"] = np.asarray(labels[positions], np.uint8)
            arrays[f"positions{i}"] = positions
            arrays[f"shape{i}"] = np.asarray(labels.shape, int)
            arrays[f"spacing{i}"] = np.asarray(spacing, float)
        np.savez(request, n=len(items), **arrays)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-m", "slicepick.allocation.itk_worker", str(request), str(result)],
                              env=env, capture_output=True, text=True)
        if not result.exists():
            raise RuntimeError(f"morphological interpolation failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        with np.load(result) as data:
            return [data[f"out{i}"] for i in range(len(items))]


def morphological(labels: np.ndarray, positions, spacing_zyx=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Labels (Z, H, W) filled by ITK's morphological contour interpolation, gap by gap."""
    return morphological_many([(labels, positions, spacing_zyx)])[0]


def itk_spacing(spacing_mm) -> tuple[float, float, float]:
    """(H, W, Z) spacing of the stored slices -> (z, y, x) of a (Z, H, W) array."""
    return float(spacing_mm[2]), float(spacing_mm[0]), float(spacing_mm[1])


def require_itk() -> None:
    """Fail in one line (how to install it) when ITK's contour interpolation is not installed
    (checked without importing it: ITK is only ever imported in a child process)."""
    try:
        metadata.version(ITK_DIST)
    except metadata.PackageNotFoundError as err:
        raise MissingDependency(ITK_MISSING) from err


def fill_between(labels: np.ndarray, positions, method: str, *, sets, n_classes: int,
                 spacing_mm, morphological_result: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training labels of one volume and which slices carry them.

    ``labels``: (Z, H, W) classes (only the annotated ``positions`` are read); ``spacing_mm``:
    (H, W, Z) spacing of the stored slices. Returns (labels (Z, H, W), labelled (Z,) bool): the
    annotated slices and, when interpolating, the slices of every gap between two annotated slices
    that both show foreground. Other gaps stay unlabelled: from a slice with foreground to one
    without, the structure ends somewhere in the gap and both methods would call the rest background;
    between two slices without, a whole tumour can lie unseen. Labelling them background gave the
    default's interpolated training labels a WT Dice of 0.0-0.5 against the truth in most volumes.
    ``morphological_result``: this volume's output of :func:`morphological_many`, when the caller
    interpolated many volumes in one child process.
    """
    positions = np.sort(np.asarray(positions, int))
    labelled = np.zeros(len(labels), bool)
    labelled[positions] = True
    if method == "none":
        out = np.zeros_like(labels, np.uint8)
        out[positions] = labels[positions]
        return out, labelled
    if method == "shape_based":
        out = shape_based(labels, positions, sets, n_classes, spacing_mm[:2])
    elif method == "morphological":
        out = morphological_result if morphological_result is not None else \
            morphological(labels, positions, itk_spacing(spacing_mm))
    else:
        raise ValueError(f"allocation: unknown interpolation '{method}' (known: {', '.join(INTERPOLATIONS)})")
    for za, zb in zip(positions[:-1], positions[1:]):
        if labels[za].any() and labels[zb].any():
            labelled[za + 1:zb] = True
        else:  # no evidence on one side: what lies in the gap is unknown, not background
            out[za + 1:zb] = 0
    return out, labelled
