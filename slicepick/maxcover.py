"""Greedy max-cover: the representativeness step of DAL (Yang et al. 2017) and ClsMC (Zheng et al. 2019).

A set S of candidates covers a universe U with

    F(S) = sum over u in U of max over s in S of sim(s, u)

(a facility-location function: monotone and submodular). Greedy addition of the candidate with
the largest gain F(S + s) - F(S) reaches at least (1 - 1/e) of the best set of the same size
(Nemhauser, Wolsey and Fisher 1978). Similarities may be negative (negative distances): the
gains are computed on F shifted by the smallest similarity, which leaves every greedy choice
unchanged and makes F(empty set) = 0, the condition of the guarantee.

Gains only shrink as S grows, so the greedy loop is lazy (a heap of stale upper bounds, a
candidate is re-scored only when it reaches the top): the same choices as re-scoring every
candidate at every step, much faster when many are chosen (ClsMC ranks whole clusters).

Memory: ``greedy_max_cover_rows`` computes similarity rows on demand, block by block, so a
universe of tens of thousands never needs its square matrix (ClsMC at BraTS scale).
"""
from __future__ import annotations

import heapq

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist


def coverage(similarity: np.ndarray, chosen) -> float:
    """F(S) for ``similarity`` of shape (n_candidates, n_universe) and candidate indices ``chosen``."""
    chosen = list(chosen)
    if not chosen:
        raise ValueError("coverage of an empty set is undefined (no maximum over an empty set)")
    return float(np.asarray(similarity)[chosen].max(axis=0).sum())


def _gains(rows: np.ndarray, covered: np.ndarray) -> np.ndarray:
    return np.maximum(rows - covered, 0).sum(axis=-1)


def greedy_max_cover(similarity: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` candidates (rows of ``similarity``, shape (n_candidates, n_universe)).

    Returned in the order greedy chose them, so every prefix is the greedy choice for its size.
    Ties go to the lowest candidate index.
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (n_candidates, n_universe), got shape {sim.shape}")
    return greedy_max_cover_rows(lambda idx: sim[idx], sim.shape[0], k)


def greedy_max_cover_rows(rows, n_candidates: int, k: int, chunk_elements: int = 4_000_000) -> list[int]:
    """``greedy_max_cover`` with the similarity rows made on demand: ``rows(indices)`` returns
    the (len(indices), n_universe) block of those candidates.

    Memory is one block of at most ``chunk_elements`` values and a few universe-long vectors,
    never the (n_candidates, n_universe) matrix: ClsMC ranks clusters of thousands of latents.
    The choices are those of ``greedy_max_cover`` on the full matrix (same arithmetic per row).
    """
    if not 0 <= k <= n_candidates:
        raise ValueError(f"cannot choose {k} of {n_candidates} candidates")
    if k == 0:
        return []
    first = np.asarray(rows(np.arange(1)))
    step = max(1, chunk_elements // max(1, first.shape[1]))
    blocks = [np.arange(i, min(i + step, n_candidates)) for i in range(0, n_candidates, step)]
    low = min(np.asarray(rows(b)).min() for b in blocks)  # the shift: F(empty) = 0
    covered = np.full(first.shape[1], low, dtype=first.dtype)
    gains = np.concatenate([_gains(np.asarray(rows(b)), covered) for b in blocks])
    heap = [(-float(g), i) for i, g in enumerate(gains)]
    heapq.heapify(heap)
    scored_at = np.zeros(n_candidates, dtype=int)  # how many were chosen when each bound was computed
    chosen: list[int] = []
    while len(chosen) < k:
        neg_gain, i = heapq.heappop(heap)
        if scored_at[i] == len(chosen):  # fresh: no other candidate can beat (gain, -index)
            chosen.append(i)
            covered = np.maximum(covered, np.asarray(rows(np.array([i])))[0])
        else:
            scored_at[i] = len(chosen)
            heapq.heappush(heap, (-float(_gains(np.asarray(rows(np.array([i]))), covered)[0]), i))
    return chosen


def _hull(points: np.ndarray) -> np.ndarray:
    """The rows of ``points`` on their convex hull, or all rows where Qhull cannot build one (few or flat)."""
    if len(points) <= 64:
        return points
    if points.shape[1] == 1:
        return points[[np.argmin(points[:, 0]), np.argmax(points[:, 0])]]
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # flat or degenerate
        return points


def farthest_distance(a: np.ndarray, b: np.ndarray) -> float:
    """max over rows x of ``a`` and y of ``b`` of |x - y|, the same float ``cdist(a, b).max()`` gives.

    A convex function's maximum over a hull sits at a vertex, so only hull vertices are compared."""
    return float(cdist(_hull(a), _hull(b)).max())


def greedy_max_cover_points(points: np.ndarray, universe: np.ndarray, k: int,
                            chunk_elements: int = 4_000_000) -> list[int]:
    """``greedy_max_cover`` for similarity = minus the Euclidean distance, rows of ``points`` as
    candidates and rows of ``universe`` to cover: the same choices, in far fewer distance evaluations.

    Every candidate's gain is kept up to date instead of re-scored: a choice changes the coverage of
    only the universe members it is now the nearest choice to (a shrinking share as choices
    accumulate), so only those columns are revisited, for every candidate at once. Gains within
    a hair of the best are recomputed exactly before choosing, so rounding in the running sums never
    changes a choice (ties: the lowest index, as ``greedy_max_cover``).
    """
    points, universe = np.asarray(points, dtype=np.float64), np.asarray(universe, dtype=np.float64)
    n = len(points)
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} candidates")
    if k == 0:
        return []
    # distance to the nearest choice; before any, the largest distance (the shift that makes F(empty) = 0)
    nearest = np.full(len(universe), farthest_distance(points, universe))
    step = max(1, chunk_elements // len(universe))

    def gains_of(rows: np.ndarray) -> np.ndarray:  # exact gains of candidates ``rows``, in blocks
        return np.concatenate([np.maximum(nearest - cdist(points[rows[i:i + step]], universe), 0).sum(1)
                               for i in range(0, len(rows), step)])

    gains = gains_of(np.arange(n))
    available = np.ones(n, bool)
    chosen: list[int] = []
    while len(chosen) < k:
        best = gains.max()
        close = np.flatnonzero(available & (gains >= best - 1e-9 * (abs(best) + 1.0)))
        exact = gains_of(close)
        i = int(close[np.argmax(exact)])  # the first of equal gains: the lowest index
        chosen.append(i)
        available[i] = False
        gains[i] = -np.inf
        to_i = cdist(points[i:i + 1], universe)[0]
        changed = np.flatnonzero(to_i < nearest)
        if len(changed):
            old, new, columns = nearest[changed], to_i[changed], universe[changed]
            block = max(1, chunk_elements // len(changed))
            for start in range(0, n, block):
                d = cdist(points[start:start + block], columns)
                gains[start:start + block] -= (np.maximum(old - d, 0) - np.maximum(new - d, 0)).sum(1)
            nearest[changed] = new  # (chosen candidates stay at -inf: -inf minus a finite change)
    return chosen
