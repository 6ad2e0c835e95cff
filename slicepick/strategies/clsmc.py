"""clsmc: clustering and max-cover on the VAE latents, one shot (Zheng et al. 2019).

As re-implemented in the GGS paper (Sec. 3.2): the pool's latents are clustered once
(agglomerative, ``linkage``, ``n_clusters``); the budget is shared across clusters in proportion
to their sizes; inside each cluster, greedy max-cover (``maxcover``) chooses the samples that
best represent the cluster, with similarity = minus the Euclidean distance between latents (the
latents are low-dimensional, 2-3 in the paper, where cosine would keep only the direction from
the origin and ignore how far apart two samples are).

The result is a ranking of the pool that is nested: the set for any budget is a prefix of the set
for every larger budget, so the schedule's rounds only add samples. Two choices make it so:

- sharing by size, seat by seat: sample t+1 comes from the cluster whose count lags its quota
  t * size / pool most (ties: the larger cluster, then the one with the lowest sample id). Each
  cluster stays within one sample of its exact quota at every budget (checked in the tests on
  random cluster sizes), like the one-shot largest-remainder split, which itself can take a
  sample away from a cluster when the budget grows (the Alabama paradox) and so cannot give a
  nested ranking;
- inside a cluster, greedy order is itself nested.

ClsMC never looks at the segmentation model (``USES_MODEL = False``) and replaces the shared
random start: round 0 is the first samples of the ranking (``initial_selection``), and each
round adds the next ones. The U-Net is trained as for every method.

The ranking depends only on the latents and the method's block, not on the seed or the round, so
the workflow computes it once per latent space, as far as the schedule's last budget (rule
``clsmc_ranking``, ``rank_pool``, written to ``vae/z{dim}/clsmc_ranking_<method>.npy``) and every
round and seed reads it (``INPUTS``).

Bounded memory at paper scale (BraTS: about 36,000 pool slices):

- clustering: up to ``FULL_LINKAGE_MAX`` latents, full agglomerative clustering (SciPy holds the
  condensed distance matrix, N^2 / 2 values: 100 MB at 5,000). Above that, the merges are
  restricted to a k-nearest-neighbour graph (``NEIGHBOURS``; components the graph leaves apart are
  joined by their closest pair of points), memory N * k: for Ward, ``graph_ward`` (reciprocal
  nearest-neighbour merges along the graph in whole-array steps, exact Ward once ``EXACT_BELOW``
  clusters are left; it gives scikit-learn's connectivity-constrained Ward, tested, 8 times
  faster at 36,000); for the other linkages scikit-learn's ``connectivity``. A documented deviation
  from full Ward: it agrees with full Ward on VAE-like latents at small N (adjusted Rand index
  >= 0.9, tested);
- max-cover: ``maxcover.greedy_max_cover_points`` keeps every candidate's gain up to date from the
  universe members a choice covers better, instead of re-scoring stale candidates (with distances
  as similarities nearly every bound goes stale after a choice, so the lazy greedy re-scored almost
  every candidate per choice); the same choices as the full-matrix greedy (tested), in blocks, never
  the cluster x cluster matrix. Every member is a candidate, but in a cluster of more than
  ``UNIVERSE_MAX`` members the universe to cover is a systematic sample of ``UNIVERSE_MAX`` of
  them (every s-th member in sample-id order), so ranking costs members x ``UNIVERSE_MAX`` instead
  of members squared. Coverage of the sample estimates coverage of the cluster; at the paper's
  budgets (at most a few percent of a cluster) the sample is much larger than the number chosen.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.sparse import triu as sp_triu
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import AgglomerativeClustering
from sklearn.neighbors import KDTree, kneighbors_graph

from slicepick.maxcover import greedy_max_cover_points
from slicepick.strategies.base import SuggestionContext, check_request, with_defaults

USES_MODEL = False
INPUTS = ("ranking",)  # the cached ranking of the pool (rule clsmc_ranking, from the VAE latents)
FULL_LINKAGE_MAX = 5000  # above this many latents, merges follow a k-nearest-neighbour graph
NEIGHBOURS = 10
EXACT_BELOW = 256  # graph_ward: exact Ward once the graph merges have left this many clusters
UNIVERSE_MAX = 2000  # max-cover inside a larger cluster covers a systematic sample of this many members
DEFAULTS = {"n_clusters": 10, "linkage": "ward", "latent_dim": 3}  # latent_dim: which VAE latents (workflow inputs)
LINKAGES = ("ward", "complete", "average", "single")


def method_params(params: dict | None) -> dict:
    p = with_defaults("clsmc", params, DEFAULTS)
    if p["linkage"] not in LINKAGES:
        raise ValueError(f"clsmc: linkage '{p['linkage']}' is not one of {', '.join(LINKAGES)}")
    if int(p["n_clusters"]) < 1:
        raise ValueError(f"clsmc: n_clusters must be at least 1, got {p['n_clusters']}")
    p["n_clusters"] = int(p["n_clusters"])
    return p


def neighbour_graph(latents: np.ndarray, k: int = NEIGHBOURS):
    """Symmetric k-nearest-neighbour graph of the rows, made connected.

    Components left apart are joined by the closest pair of points between each component and the
    rest (Boruvka steps), so scikit-learn never falls back to its own completion, which measures
    every pair of points across components (memory |A| x |B|).
    """
    graph = kneighbors_graph(latents, min(k, len(latents) - 1), include_self=False).tolil()
    n_components, labels = connected_components(graph, directed=False)
    while n_components > 1:
        for c in range(n_components):
            inside = np.flatnonzero(labels == c)
            outside = np.flatnonzero(labels != c)
            distance, nearest = KDTree(latents[outside]).query(latents[inside], k=1)
            best = int(np.argmin(distance[:, 0]))
            graph[inside[best], outside[nearest[best, 0]]] = 1
        n_components, labels = connected_components(graph, directed=False)
    graph = graph.tocsr()
    return graph.maximum(graph.T)


def weighted_ward(sizes: np.ndarray, centroids: np.ndarray, n_clusters: int) -> np.ndarray:
    """Exact Ward on clusters given by their sizes and centroids, merged down to ``n_clusters``: the final
    cluster of each input cluster (ids of input clusters). Dense (M x M): for a few hundred clusters."""
    m = len(sizes)
    size = np.asarray(sizes, dtype=np.float64).copy()
    centre = np.asarray(centroids, dtype=np.float64).copy()
    sq = ((centre[:, None, :] - centre[None, :, :]) ** 2).sum(-1)
    cost = size[:, None] * size[None, :] / (size[:, None] + size[None, :]) * sq  # Ward's merge cost
    np.fill_diagonal(cost, np.inf)
    parent, alive = np.arange(m), np.ones(m, bool)
    for _ in range(m - n_clusters):
        a, b = sorted(divmod(int(np.argmin(cost)), m))
        centre[a] = (size[a] * centre[a] + size[b] * centre[b]) / (size[a] + size[b])
        size[a] += size[b]
        parent[parent == b] = a
        alive[b] = False
        cost[b, :] = cost[:, b] = np.inf
        others = np.flatnonzero(alive)
        others = others[others != a]
        row = size[a] * size[others] / (size[a] + size[others]) * ((centre[others] - centre[a]) ** 2).sum(-1)
        cost[a, others] = cost[others, a] = row
    return parent


def graph_ward(latents: np.ndarray, n_clusters: int, graph, exact_below: int = EXACT_BELOW) -> np.ndarray:
    """Ward's clustering with merges along ``graph`` (``neighbour_graph``) down to ``exact_below`` clusters,
    exact Ward on those; raw cluster id per row.

    The graph stage merges every pair of clusters that are each other's cheapest graph neighbour at once
    (reciprocal nearest neighbours; Ward's merge cost is reducible, so these are merges the one-at-a-time
    algorithm also makes), in whole-array steps instead of scikit-learn's one merge per Python loop pass:
    on VAE-like latents it gives scikit-learn's connectivity-constrained Ward's clusters (tested), about
    8 times faster at 36,000 latents (benchmarks/README.md).
    """
    n = len(latents)
    size = np.ones(n)
    total = np.asarray(latents, dtype=np.float64).copy()  # sum of each cluster's latents, at its id
    owner = np.arange(n)  # the cluster id (a row index) of each row
    upper = sp_triu(graph, k=1).tocoo()
    u, v = upper.row.astype(np.int64), upper.col.astype(np.int64)
    active, stop = n, max(n_clusters, min(exact_below, n))
    while active > stop and len(u):
        cost = size[u] * size[v] / (size[u] + size[v]) * ((total[u] / size[u, None] - total[v] / size[v, None]) ** 2).sum(1)
        ends, other, both = np.concatenate([u, v]), np.concatenate([v, u]), np.concatenate([cost, cost])
        order = np.lexsort((other, both, ends))  # per cluster: cheapest neighbour first (ties: lower id)
        first = order[np.r_[True, ends[order][1:] != ends[order][:-1]]]
        nearest, nearest_cost = np.full(n, -1), np.full(n, np.inf)
        nearest[ends[first]], nearest_cost[ends[first]] = other[first], both[first]
        a = ends[first]
        pairs = a[(nearest[nearest[a]] == a) & (a < nearest[a])]
        if len(pairs) > active - stop:  # the last step: the cheapest merges only
            pairs = pairs[np.argsort(nearest_cost[pairs], kind="stable")[:active - stop]]
        b = nearest[pairs]
        size[pairs] += size[b]
        total[pairs] += total[b]
        into = np.arange(n)
        into[b] = pairs
        owner = into[owner]
        lo, hi = np.minimum(into[u], into[v]), np.maximum(into[u], into[v])
        edges = np.unique(lo[lo != hi] * n + hi[lo != hi])
        u, v = edges // n, edges % n
        active -= len(pairs)
    ids, index = np.unique(owner, return_inverse=True)
    return weighted_ward(size[ids], total[ids] / size[ids, None], n_clusters)[index]


def cluster_latents(latents: np.ndarray, n_clusters: int, linkage: str,
                    full_max: int = FULL_LINKAGE_MAX) -> np.ndarray:
    """Cluster label per row of ``latents`` (N, D); labels numbered by each cluster's first row.

    Above ``full_max`` rows the merges follow ``neighbour_graph`` (bounded memory, module docstring):
    ``graph_ward`` for Ward, scikit-learn's connectivity-constrained clustering for the other linkages.
    """
    n_clusters = min(n_clusters, len(latents))
    if n_clusters == 1:
        return np.zeros(len(latents), int)
    if len(latents) <= full_max:
        raw = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage).fit_predict(latents)
    elif linkage == "ward":
        raw = graph_ward(latents, n_clusters, neighbour_graph(latents))
    else:
        raw = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage,
                                      connectivity=neighbour_graph(latents)).fit_predict(latents)
    _, first = np.unique(raw, return_index=True)
    relabel = np.empty(raw.max() + 1, int)
    relabel[raw[np.sort(first)]] = np.arange(len(first))
    return relabel[raw]


def allocation_order(sizes, n: int) -> np.ndarray:
    """The cluster each of the first ``n`` ranked samples comes from (sizes: samples per cluster).

    Seat by seat: the next sample goes to the cluster furthest below its quota t * size / total
    (exact integer arithmetic), ties to the larger cluster, then the lower cluster number.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot rank {n} samples from clusters holding {total}")
    counts = np.zeros_like(sizes)
    order = np.empty(n, int)
    tie_break = np.lexsort((np.arange(len(sizes)), -sizes))  # larger first, then lower number
    for t in range(n):
        lag = (t + 1) * sizes - counts * total  # total * (quota - count)
        lag[counts >= sizes] = np.iinfo(np.int64).min
        best = tie_break[np.argmax(lag[tie_break])]  # argmax keeps the first of equal lags
        order[t] = best
        counts[best] += 1
    return order


def nested_ranking(latents: np.ndarray, n: int, n_clusters: int, linkage: str) -> np.ndarray:
    """Row indices of ``latents`` (N, D): the first ``n`` of ClsMC's nested ranking of all N."""
    latents = np.asarray(latents, dtype=np.float64)
    labels = cluster_latents(latents, n_clusters, linkage)
    sizes = np.bincount(labels)
    order = allocation_order(sizes, n)
    members = [np.flatnonzero(labels == c) for c in range(len(sizes))]
    picks = []
    for c, rows in enumerate(members):
        need = int((order == c).sum())
        points = latents[rows]  # candidates: the cluster; similarity -distance, made on demand
        universe = points[::-(-len(rows) // UNIVERSE_MAX)]  # the cluster, or a systematic sample of it
        picks.append(rows[greedy_max_cover_points(points, universe, need)])
    taken = np.zeros(len(sizes), int)
    ranking = np.empty(n, int)
    for t, c in enumerate(order):
        ranking[t] = picks[c][taken[c]]
        taken[c] += 1
    return ranking


def rank_pool(pool_ids, latents: np.ndarray, params: dict | None, n: int | None = None) -> np.ndarray:
    """The first ``n`` (default: all) of the pool's ranking, as sample ids; ``latents`` holds one row
    per sample id of the store. Ranking only as far as the schedule's last budget saves the greedy
    steps beyond it; the prefix is the same."""
    pool_ids = np.asarray(pool_ids, dtype=np.int64)
    if latents.ndim != 2 or latents.shape[0] <= int(pool_ids.max()):
        raise ValueError(f"clsmc: latents of shape {latents.shape}; expected one row per sample id of the "
                         f"store (at least {int(pool_ids.max()) + 1})")
    p = method_params(params)
    n = len(pool_ids) if n is None else int(n)
    return pool_ids[nested_ranking(np.asarray(latents[pool_ids]), n, p["n_clusters"], p["linkage"])]


def write_ranking(path, pool_ids, latents_path, params: dict | None, n: int | None = None) -> None:
    """``rank_pool`` of the latents in ``latents_path``, saved atomically to ``path`` (.npy)."""
    ranking = rank_pool(pool_ids, np.load(latents_path, mmap_mode="r"), params, n)
    tmp = Path(f"{path}.tmp.npy")
    np.save(tmp, ranking)
    os.replace(tmp, path)


def _load_ranking(ctx: SuggestionContext, pool: np.ndarray) -> np.ndarray:
    path = ctx.inputs.get("ranking")
    if path is None:
        raise ValueError("clsmc needs its ranking of the pool: inputs['ranking'] = path of clsmc_ranking_<method>.npy "
                         "(rule clsmc_ranking, or write_ranking)")
    ranking = np.load(path)
    if ranking.ndim != 1 or len(np.unique(ranking)) != len(ranking) or not np.isin(ranking, pool).all():
        raise ValueError(f"clsmc: {path} does not rank this pool (ids outside the pool of {len(pool)} samples, "
                         f"or repeated); it was computed for another store")
    return ranking


def ranked_pool(ctx: SuggestionContext, n: int) -> np.ndarray:
    """Sample ids: the first ``n`` of the ranking of the pool (annotated and unannotated)."""
    pool = np.union1d(ctx.annotated, ctx.unannotated).astype(int)
    ranking = _load_ranking(ctx, pool)
    if n > len(ranking):
        raise ValueError(f"clsmc: {ctx.inputs['ranking']} ranks {len(ranking)} samples but {n} are needed; it was "
                         f"computed for a smaller schedule (rerun rule clsmc_ranking)")
    return ranking[:n]


def initial_selection(ctx: SuggestionContext, n: int) -> np.ndarray:
    """Round 0: the first ``n`` of the ranking (ClsMC does not use the shared random start)."""
    return ranked_pool(ctx, n)


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    """The next ``k`` samples of the ranking that are not annotated yet."""
    check_request(k, ctx)
    # A prefix of len(annotated) + k holds at least k unannotated samples.
    ranking = ranked_pool(ctx, len(ctx.annotated) + k)
    fresh = ranking[~np.isin(ranking, ctx.annotated)]
    return [int(i) for i in fresh[:k]]
