"""Filling label maps between annotated slices of a volume (training labels only, never test labels).

- ``none``: only the annotated slices are labelled.
- ``shape_based`` (ours; the paper does not say which it used): per region, the in-plane signed
  distance map (negative inside, millimetres) of the two consecutive annotated slices around a
  slice is interpolated linearly in z, and the region is where it is negative. Regions are the
  evaluated regions (BraTS WT, TC, ET) plus one per class; nesting is kept by never letting a
  region leave a region that contains it, and each voxel takes the class whose region pattern the
  distances satisfy best. A region absent from an annotated slice counts as far away (the
  slice's diagonal), so it shrinks to nothing towards that slice. Nothing is extrapolated beyond
  the first and last annotated slices.
- ``morphological``: ITK's MorphologicalContourInterpolator (Albu et al. 2008; 3D Slicer's "Fill
  between slices"), run on each gap between two consecutive annotated slices separately: ITK
  takes an empty slice for an unannotated one, so a whole volume would bridge over annotated
  slices that show no foreground. A label present on only one side of a gap is not carried into it.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

INTERPOLATIONS = ("none", "shape_based", "morphological")
ITK_PIN = "itk-morphologicalcontourinterpolation==2.1.2"
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


def morphological(labels: np.ndarray, positions, spacing_zyx=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Labels (Z, H, W) filled by ITK's morphological contour interpolation, gap by gap."""
    require_itk()
    import itk  # 1.5 GB of wheels: imported only where a job interpolates

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


def require_itk() -> None:
    """Fail in one line (how to install it) when ITK's contour interpolation is missing."""
    try:
        import itk

        itk.MorphologicalContourInterpolator  # noqa: B018  (lazy module: load the filter now)
    except (ImportError, AttributeError) as err:
        raise MissingDependency(ITK_MISSING) from err


def fill_between(labels: np.ndarray, positions, method: str, *, sets, n_classes: int,
                 spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """Training labels of one volume and which slices carry them.

    ``labels``: (Z, H, W) classes (only the annotated ``positions`` are read); ``spacing_mm``:
    (H, W, Z) spacing of the stored slices. Returns (labels (Z, H, W), labelled (Z,) bool): the
    annotated slices, plus every slice between the first and last annotated one when interpolating.
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
        out = morphological(labels, positions, (spacing_mm[2], spacing_mm[0], spacing_mm[1]))
    else:
        raise ValueError(f"allocation: unknown interpolation '{method}' (known: {', '.join(INTERPOLATIONS)})")
    if len(positions):
        labelled[positions[0]:positions[-1] + 1] = True
    return out, labelled
