"""Greedy max-cover: the hand example, brute force, and the naive greedy it must equal."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from slicepick.maxcover import (coverage, farthest_distance, greedy_max_cover, greedy_max_cover_points,
                                greedy_max_cover_rows)

# Rows: candidates, columns: universe. Row sums 4, 4, 6, 4 -> candidate 2 first; covered then
# (0, 3, 3, 0): gains 4, 2, -, 2 -> candidate 0; covered (3, 3, 3, 1): gains 0 and 0 -> the lower
# index (1), then 3.
HAND = np.array([[3, 0, 0, 1],
                 [2, 2, 0, 0],
                 [0, 3, 3, 0],
                 [1, 1, 1, 1]], float)


def naive_greedy(sim, k):
    """Greedy by re-evaluating F(S + i) for every candidate at every step."""
    chosen = []
    for _ in range(k):
        values = [coverage(sim, chosen + [i]) if i not in chosen else -np.inf for i in range(len(sim))]
        chosen.append(int(np.argmax(values)))
    return chosen


def test_hand_example():
    assert greedy_max_cover(HAND, 4) == [2, 0, 1, 3]
    assert greedy_max_cover(HAND, 2) == [2, 0]
    assert coverage(HAND, [2, 0]) == 10.0


def test_ties_go_to_lowest_index():
    assert greedy_max_cover(np.eye(3), 3) == [0, 1, 2]
    assert greedy_max_cover(np.ones((4, 2)), 2) == [0, 1]


@pytest.mark.parametrize("seed", range(6))
def test_lazy_greedy_equals_naive_greedy_even_with_negative_similarity(seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(12, 2))
    sim = -np.linalg.norm(points[:, None] - points[None], axis=-1)  # negative distances
    assert greedy_max_cover(sim, 12) == naive_greedy(sim, 12)


@pytest.mark.parametrize("seed", range(10))
def test_greedy_reaches_one_minus_one_over_e_of_the_optimum(seed):
    rng = np.random.default_rng(seed)
    sim = rng.uniform(0, 1, size=(9, 15)) ** 3  # sparse-ish coverage makes greedy work for it
    for k in (1, 2, 3, 4):
        best = max(coverage(sim, s) for s in combinations(range(9), k))
        got = coverage(sim, greedy_max_cover(sim, k))
        assert got >= (1 - 1 / np.e) * best - 1e-12
        if k == 1:
            assert got == pytest.approx(best)


@pytest.mark.parametrize("seed", range(3))
def test_rows_on_demand_in_small_blocks_choose_as_the_full_matrix(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 20, size=(40, 2))
    sim = -np.abs(points[:, None] - points[None]).sum(-1).astype(float)  # integers: exact sums, exact ties
    asked = []

    def rows(idx):
        asked.append(len(idx))
        return sim[idx]

    assert greedy_max_cover_rows(rows, 40, 40, chunk_elements=100) == naive_greedy(sim, 40)
    assert max(asked) * sim.shape[1] <= 120  # blocks of 2 rows of 40: the matrix is never asked for at once


def test_rejects_bad_requests():
    with pytest.raises(ValueError, match="cannot choose 5 of 4"):
        greedy_max_cover(HAND, 5)
    assert greedy_max_cover(HAND, 0) == []


@pytest.mark.parametrize("seed", range(6))
def test_distance_cover_with_running_gains_chooses_as_the_full_matrix(seed):
    # minus Euclidean distance, as ClsMC uses it; rounded latents give duplicates and exact ties, and k up to
    # every candidate runs into the plateau where every gain is 0 (ties to the lowest index)
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(seed)
    for trial in range(25):
        n, d = int(rng.integers(1, 150)), int(rng.integers(1, 4))
        points = rng.normal(size=(n, d))
        if trial % 3 == 0:
            points = np.round(points, 1)
        universe = points[rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False)] if trial % 2 \
            else rng.normal(size=(int(rng.integers(1, 100)), d))
        k = int(rng.integers(0, n + 1))
        assert farthest_distance(points, universe) == cdist(points, universe).max()
        expected = greedy_max_cover(-cdist(points, universe), k)
        assert greedy_max_cover_points(points, universe, k, chunk_elements=int(rng.integers(1, 3000))) == expected
