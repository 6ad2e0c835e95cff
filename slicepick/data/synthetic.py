"""The embedded default dataset: small BraTS-like volumes generated on the spot.

Written in the BraTS folder layout (``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``) so that the
same reader real data uses is exercised. Labels follow BraTS 2019: 1 necrotic core, 2 edema,
4 enhancing tumour. Deterministic for a seed.

Made to be about as hard as the real task, so that a full-data model stays below Dice 1 and the
choice of slices can matter (DESIGN.md section 3):

* anatomy: an irregular brain outline, a folded cortex (grey-matter ribbon cut by CSF-filled sulci),
  ventricles of varying size, white matter with patchy texture;
* scanners: per case and modality a contrast change (gamma), tissue means jittered, a strong smooth
  bias field, noise of varying level, and a raw intensity scale (removed by z-scoring);
* tumours: one or two lesions of very different size (a few voxels to a third of the brain),
  irregular outlines, a contrast that goes from conspicuous to faint (the lesion's intensities are
  blended with the tissue around it); the enhancing rim and the necrotic core are not always present;
* outlines: the lesion's look fades across its edge and the label's outline sits at a point of the
  fade that varies per lesion (``_fading_edge``), as raters' outlines do;
* mimics: bright non-tumour spots (vessels, gliosis) in some modalities, so that "bright on FLAIR"
  is not enough.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from slicepick.seeding import rng_for

MODALITIES = ("t1", "t1ce", "t2", "flair")

# Mean intensity of each tissue per modality (t1, t1ce, t2, flair), roughly as MRI contrasts go.
_TISSUE_INTENSITY = {
    "csf": (0.20, 0.22, 1.00, 0.10),
    "grey": (0.50, 0.52, 0.62, 0.58),
    "white": (0.72, 0.74, 0.42, 0.46),
    "edema": (0.44, 0.46, 0.84, 0.86),
    "enhancing": (0.50, 0.95, 0.70, 0.72),
    "necrotic": (0.28, 0.32, 0.88, 0.52),
    "mimic": (0.62, 0.90, 0.80, 0.80),  # bright spots that are not tumour (vessels, gliosis)
}
_TISSUES = tuple(_TISSUE_INTENSITY)
EDGE_SHIFT = 0.7  # voxels: how far a lesion's drawn outline may sit from the middle of its fading edge


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def _ellipsoid(grid, centre, radii, wobble=None) -> np.ndarray:
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return r2 <= (1.0 if wobble is None else 1.0 + wobble)


def _anatomy(rng: np.random.Generator, grid, shape):
    """Tissue index map (0 outside the brain, then ``_TISSUES`` order + 1) and the brain mask."""
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
    # Axial extent shorter than the volume, so the first and last slices are blank.
    radii = np.array(shape) * np.array([rng.uniform(0.36, 0.44), rng.uniform(0.38, 0.46), rng.uniform(0.34, 0.42)])
    brain = _ellipsoid(grid, centre, radii, 0.12 * _smooth_noise(rng, shape, 3))
    # folded cortex: the white-matter boundary follows fine noise (gyri), sulci hold CSF
    white = _ellipsoid(grid, centre, radii * rng.uniform(0.66, 0.76), 0.45 * _smooth_noise(rng, shape, 1.6))
    sulci = (_smooth_noise(rng, shape, 1.2) > rng.uniform(0.25, 0.4)) & brain & ~white
    ventricles = np.zeros(shape, bool)
    scale = rng.uniform(0.7, 1.5)
    for side in (-1, 1):
        c = centre + np.array([side * radii[0] * 0.18, rng.uniform(-2, 2), 0])
        ventricles |= _ellipsoid(grid, c, radii * np.array([0.09, 0.26, 0.28]) * scale,
                                 0.3 * _smooth_noise(rng, shape, 2))
    tissue = np.zeros(shape, np.uint8)
    tissue[brain] = _TISSUES.index("grey") + 1
    tissue[brain & white] = _TISSUES.index("white") + 1
    tissue[sulci | (brain & ventricles)] = _TISSUES.index("csf") + 1
    return tissue, brain, centre, radii


def _lesion(rng: np.random.Generator, grid, shape, brain, centre, radii, size):
    """Edema, enhancing and necrotic masks of one lesion; enhancing and necrosis not always present."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    t_centre = centre + direction * radii * rng.uniform(0.0, 0.55)
    t_radii = np.maximum(size * rng.uniform(0.7, 1.3, 3) * np.array([1, 1, 0.8]), 1.2)
    wobble = rng.uniform(0.2, 0.6) * _smooth_noise(rng, shape, rng.uniform(1.5, 3.0))
    edema = _ellipsoid(grid, t_centre, t_radii, wobble) & brain
    enhancing = np.zeros(shape, bool)
    necrotic = np.zeros(shape, bool)
    if rng.random() < 0.7:
        enhancing = _ellipsoid(grid, t_centre, t_radii * rng.uniform(0.45, 0.7), wobble) & edema
        if rng.random() < 0.6:
            necrotic = _ellipsoid(grid, t_centre, t_radii * rng.uniform(0.2, 0.4), wobble) & enhancing
    return edema, enhancing, necrotic


def _fading_edge(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Visibility of a lesion, fading across its outline; where the annotator drew the line varies.

    Infiltrating edema has no sharp edge: the look of the lesion ramps down over a voxel or two, and
    raters put the outline at different points of the ramp. Here the outline sits up to
    ``EDGE_SHIFT`` voxels inside or outside the ramp's midpoint, drawn per lesion, so no model can place every
    boundary exactly and a full-data model stays below Dice 1, as real inter-rater variation does.
    """
    signed = ndimage.distance_transform_edt(~mask) - ndimage.distance_transform_edt(mask)  # > 0 outside
    shift = rng.uniform(-EDGE_SHIFT, EDGE_SHIFT)
    width = rng.uniform(0.6, 1.2)
    return (1.0 / (1.0 + np.exp((signed - shift) / width))).astype(np.float32)


def synthesize_case(rng: np.random.Generator, shape=(48, 48, 40)):
    """One case: (4, X, Y, Z) float32 image and (X, Y, Z) uint8 BraTS label map."""
    shape = tuple(int(s) for s in shape)
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    tissue, brain, centre, radii = _anatomy(rng, grid, shape)

    label = np.zeros(shape, np.uint8)
    # lesion size: from a few voxels to a third of the brain, small ones as likely as large ones
    sizes = [np.exp(rng.uniform(np.log(0.07), np.log(0.3))) * min(shape[:2])]
    if rng.random() < 0.35:
        sizes.append(np.exp(rng.uniform(np.log(0.05), np.log(0.15))) * min(shape[:2]))
    contrast = np.zeros(shape, np.float32)  # how far each lesion voxel departs from its tissue: faint to full
    visible = np.zeros(shape, np.float32)  # how much of the edema's look each voxel shows, 0 to 1
    for size in sizes:
        edema, enhancing, necrotic = _lesion(rng, grid, shape, brain, centre, radii, size)
        new = edema & (label == 0)
        label[new] = 2
        label[enhancing] = 4
        label[necrotic] = 1
        strength = rng.uniform(0.45, 1.0)
        contrast[edema] = strength
        visible = np.maximum(visible, strength * _fading_edge(rng, edema) * brain)

    mimic = np.zeros(shape, bool)
    for _ in range(rng.integers(0, 4)):
        c = centre + rng.uniform(-0.7, 0.7, 3) * radii
        mimic |= _ellipsoid(grid, c, rng.uniform(0.8, 2.2, 3), 0.3 * _smooth_noise(rng, shape, 1.5))
    mimic &= brain & (label == 0)

    image = np.zeros((len(MODALITIES),) + shape, np.float32)
    bias = 1.0 + rng.uniform(0.15, 0.35) * _smooth_noise(rng, shape, 7)
    patches = _smooth_noise(rng, shape, 2.0)  # tissue heterogeneity shared by the modalities
    for m in range(len(MODALITIES)):
        means = {name: v[m] * rng.uniform(0.92, 1.08) for name, v in _TISSUE_INTENSITY.items()}  # scanner jitter
        base = np.zeros(shape, np.float32)
        for i, name in enumerate(_TISSUES[:3]):
            base[tissue == i + 1] = means[name]
        value = base + visible * (means["edema"] - base)
        for code, name in ((4, "enhancing"), (1, "necrotic")):
            at = label == code
            value[at] = base[at] + contrast[at] * (means[name] - base[at])
        mimic_strength = rng.uniform(0.0, 1.0)  # each modality shows the mimics to its own degree
        value[mimic] = base[mimic] + mimic_strength * (means["mimic"] - base[mimic])
        value *= 1.0 + 0.08 * patches + 0.04 * _smooth_noise(rng, shape, 1.0)
        noisy = value + rng.uniform(0.03, 0.08) * rng.standard_normal(shape)
        gamma = rng.uniform(0.75, 1.35)  # scanner contrast
        scale = rng.uniform(200, 1000)  # raw scanners differ in scale; z-scoring removes it
        image[m] = np.where(brain, np.clip(noisy * bias, 0.01, None) ** gamma * scale, 0.0)
    return image.astype(np.float32), label


def generate_dataset(out_dir: str | Path, n_cases: int, shape=(48, 48, 40), seed: int = 0,
                     spacing_mm=(2.0, 2.0, 2.0), prefix: str = "SYN") -> list[str]:
    """Write ``n_cases`` BraTS-layout cases under ``out_dir``; returns the case ids."""
    out_dir = Path(out_dir)
    if n_cases < 1:
        raise ValueError(f"synthetic dataset: n_cases must be at least 1, got {n_cases}")
    affine = np.diag(list(spacing_mm) + [1.0])
    case_ids = []
    for i in range(n_cases):
        case_id = f"{prefix}_{i:03d}"
        image, label = synthesize_case(rng_for(seed, "synthetic", i), shape)
        case_dir = out_dir / case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        for m, name in enumerate(MODALITIES):
            nib.save(nib.Nifti1Image(image[m], affine), case_dir / f"{case_id}_{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), case_dir / f"{case_id}_seg.nii.gz")
        case_ids.append(case_id)
    return case_ids
