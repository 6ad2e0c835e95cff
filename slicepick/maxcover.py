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
"""
from __future__ import annotations

import heapq

import numpy as np


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
    n = sim.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} candidates")
    if k == 0:
        return []
    covered = np.full(sim.shape[1], sim.min(), dtype=sim.dtype)  # the shift: F(empty) = 0
    heap = [(-float(g), i) for i, g in enumerate(_gains(sim, covered))]
    heapq.heapify(heap)
    scored_at = np.zeros(n, dtype=int)  # how many were chosen when each bound was computed
    chosen: list[int] = []
    while len(chosen) < k:
        neg_gain, i = heapq.heappop(heap)
        if scored_at[i] == len(chosen):  # fresh: no other candidate can beat (gain, -index)
            chosen.append(i)
            covered = np.maximum(covered, sim[i])
        else:
            scored_at[i] = len(chosen)
            heapq.heappush(heap, (-float(_gains(sim[i:i + 1], covered)[0]), i))
    return chosen
