"""Which volumes, and which slices inside each volume, get annotated (no model in the loop).

Volumes: drawn once per (seed, B, s), shared by every selection, interpolation and model of that
cell (the comparison is paired). Slices inside a volume, over its non-blank extent (the prepared
store keeps exactly those slices):

- ``random``: uniform without replacement.
- ``fixed_interval``: k slices equally spaced, position floor((i + u) * n / k) for i = 0..k-1, with
  one seeded offset u in [0, 1) per volume: every gap is n / k slices (+-1) and the first slice
  lies anywhere in the first gap.
- ``ual`` (unsupervised active learning; the paper's exact features are unknown, so ours): k-means
  on slice features (each channel average-pooled to a ``grid`` x ``grid`` thumbnail), and the slice
  nearest each centre. ``equal`` allocation clusters each volume into its own rho slices (the
  paper's proviso); ``free`` clusters all slices of the s volumes together into B clusters, so a
  volume gets as many slices as it has representative ones (possibly none).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from slicepick.allocation.grid import slices_per_volume
from slicepick.seeding import rng_for, stream_seed

SELECTIONS = ("random", "fixed_interval", "ual")
ALLOCATIONS = ("equal", "free")


def choose_volumes(train_cases, n_volumes: int, seed: int, budget: int) -> list[str]:
    """The s volumes of cell (B, s) for this seed, in draw order (the remainder goes to the first)."""
    cases = sorted(train_cases)
    order = rng_for(seed, "allocation-volumes", budget, n_volumes).permutation(len(cases))[:n_volumes]
    return [cases[i] for i in order]


def fixed_interval_positions(n_slices: int, k: int, offset: float) -> np.ndarray:
    """k equally spaced positions in [0, n_slices), shifted by ``offset`` in [0, 1) of one gap."""
    if not 1 <= k <= n_slices:
        raise ValueError(f"fixed interval: cannot place {k} slices in {n_slices}")
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"fixed interval: offset {offset} is not in [0, 1)")
    return np.floor((np.arange(k) + offset) * n_slices / k).astype(int)


def random_positions(n_slices: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_slices, size=k, replace=False))


def slice_features(images: np.ndarray, grid: int = 8) -> np.ndarray:
    """(N, C, H, W) slices -> (N, C * grid * grid) thumbnails: what UAL clusters."""
    x = torch.as_tensor(np.asarray(images, np.float32))
    return F.adaptive_avg_pool2d(x, grid).flatten(1).numpy()


def representatives(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k distinct rows nearest the k-means centres (each centre takes its nearest free row,
    centres with the closest match first)."""
    if not 1 <= k <= len(features):
        raise ValueError(f"ual: cannot pick {k} representatives from {len(features)} slices")
    km = KMeans(n_clusters=k, n_init=4, random_state=seed % (2**31)).fit(features)
    dist = ((km.cluster_centers_[:, None, :] - features[None, :, :]) ** 2).sum(-1)  # (k, N)
    chosen: list[int] = []
    taken = np.zeros(len(features), bool)
    for centre in np.argsort(dist.min(1), kind="stable"):
        d = np.where(taken, np.inf, dist[centre])
        j = int(np.argmin(d))
        chosen.append(j)
        taken[j] = True
    return np.sort(np.array(chosen, int))


def select(selection: str, allocation: str, volumes: dict[str, int], budget: int, seed: int,
           features=None, ual_grid: int = 8) -> dict[str, np.ndarray]:
    """Positions (0-based, within each volume's non-blank slices) per volume for one method.

    ``volumes``: case -> number of non-blank slices, in draw order. ``features(case)`` returns the
    case's (n, C, H, W) slices (only ``ual`` calls it).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"allocation: unknown selection '{selection}' (known: {', '.join(SELECTIONS)})")
    if allocation not in ALLOCATIONS or (allocation == "free" and selection != "ual"):
        raise ValueError(f"allocation: selection '{selection}' has no allocation '{allocation}' "
                         "(free allocation is defined for ual only)")
    cases = list(volumes)
    s = len(cases)
    if allocation == "free":
        feats = [slice_features(features(c), ual_grid) for c in cases]
        offsets = np.cumsum([0] + [len(f) for f in feats])
        picked = representatives(np.concatenate(feats), budget, stream_seed(seed, "ual-free", budget, s))
        return {c: picked[(picked >= offsets[i]) & (picked < offsets[i + 1])] - offsets[i] for i, c in enumerate(cases)}
    out = {}
    for case, k in zip(cases, slices_per_volume(budget, s)):
        n = volumes[case]
        if k > n:
            raise ValueError(f"allocation B={budget}, s={s}: volume {case} has {n} non-blank slices, fewer than {k}")
        rng = rng_for(seed, "allocation-slices", selection, budget, s, case)
        if selection == "random":
            out[case] = random_positions(n, k, rng)
        elif selection == "fixed_interval":
            out[case] = fixed_interval_positions(n, k, float(rng.random()))
        else:
            out[case] = representatives(slice_features(features(case), ual_grid), k, stream_seed(seed, "ual", budget, s, case))
    return out
