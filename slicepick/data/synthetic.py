"""The embedded default dataset: small BraTS-like volumes generated on the spot.

Written in the BraTS folder layout (``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``)
so that the same reader real data uses is exercised. Labels follow BraTS 2019:
1 necrotic core, 2 edema, 4 enhancing tumour. Deterministic for a seed.
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
    "edema": (0.42, 0.44, 0.90, 0.95),
    "enhancing": (0.50, 1.00, 0.70, 0.72),
    "necrotic": (0.25, 0.30, 0.85, 0.50),
}


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def _ellipsoid(grid, centre, radii, wobble=None) -> np.ndarray:
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return r2 <= (1.0 if wobble is None else 1.0 + wobble)


def synthesize_case(rng: np.random.Generator, shape=(48, 48, 40)):
    """One case: (4, X, Y, Z) float32 image and (X, Y, Z) uint8 BraTS label map."""
    shape = tuple(int(s) for s in shape)
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
    # Axial extent shorter than the volume, so the first and last slices are blank.
    radii = np.array(shape) * np.array([rng.uniform(0.36, 0.44), rng.uniform(0.38, 0.46), rng.uniform(0.36, 0.42)])
    brain = _ellipsoid(grid, centre, radii, 0.08 * _smooth_noise(rng, shape, 4))
    white = _ellipsoid(grid, centre, radii * 0.72, 0.15 * _smooth_noise(rng, shape, 3))
    ventricles = np.zeros(shape, bool)
    for side in (-1, 1):
        c = centre + np.array([side * radii[0] * 0.18, rng.uniform(-2, 2), 0])
        ventricles |= _ellipsoid(grid, c, radii * np.array([0.10, 0.28, 0.30]))

    tissue = np.full(shape, "", dtype=object)
    tissue[brain] = "grey"
    tissue[brain & white] = "white"
    tissue[brain & ventricles] = "csf"

    # Tumour: position and size vary per case; irregular boundary from smooth noise.
    label = np.zeros(shape, np.uint8)
    size = rng.uniform(0.12, 0.30) * min(shape[:2])
    offset_dir = rng.standard_normal(3)
    offset_dir /= np.linalg.norm(offset_dir)
    t_centre = centre + offset_dir * radii * rng.uniform(0.15, 0.45)
    t_radii = size * rng.uniform(0.8, 1.2, 3) * np.array([1, 1, 0.8])
    wobble = 0.35 * _smooth_noise(rng, shape, 2.5)
    edema = _ellipsoid(grid, t_centre, t_radii, wobble) & brain
    enhancing = _ellipsoid(grid, t_centre, t_radii * rng.uniform(0.5, 0.65), wobble) & edema
    necrotic = _ellipsoid(grid, t_centre, t_radii * rng.uniform(0.25, 0.4), wobble) & enhancing
    label[edema] = 2
    label[enhancing] = 4
    label[necrotic] = 1
    tissue[label == 2] = "edema"
    tissue[label == 4] = "enhancing"
    tissue[label == 1] = "necrotic"

    image = np.zeros((len(MODALITIES),) + shape, np.float32)
    bias = 1.0 + 0.15 * _smooth_noise(rng, shape, 8)
    for m in range(len(MODALITIES)):
        for name, means in _TISSUE_INTENSITY.items():
            image[m][tissue == name] = means[m]
        texture = 0.04 * rng.standard_normal(shape)
        scale = rng.uniform(200, 1000)  # raw scanners differ in scale; z-scoring removes it
        image[m] = np.where(brain, np.clip((image[m] + texture) * bias, 0.01, None) * scale, 0.0)
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
