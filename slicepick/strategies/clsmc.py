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

Cost: Ward clustering holds a pool x pool distance matrix, max-cover a cluster x cluster matrix.
"""
from __future__ import annotations

import numpy as np
from monai.utils import look_up_option
from scipy.spatial.distance import cdist
from sklearn.cluster import AgglomerativeClustering

from slicepick.maxcover import greedy_max_cover
from slicepick.strategies.base import SuggestionContext, check_request, with_defaults

USES_MODEL = False
INPUTS = ("latents",)
DEFAULTS = {"n_clusters": 10, "linkage": "ward", "latent_dim": 3}  # latent_dim: which VAE latents (workflow inputs)
LINKAGES = ("ward", "complete", "average", "single")


def method_params(params: dict | None) -> dict:
    p = with_defaults("clsmc", params, DEFAULTS)
    p["linkage"] = look_up_option(p["linkage"], LINKAGES)
    if int(p["n_clusters"]) < 1:
        raise ValueError(f"clsmc: n_clusters must be at least 1, got {p['n_clusters']}")
    p["n_clusters"] = int(p["n_clusters"])
    return p


def cluster_latents(latents: np.ndarray, n_clusters: int, linkage: str) -> np.ndarray:
    """Cluster label per row of ``latents`` (N, D); labels numbered by each cluster's first row."""
    n_clusters = min(n_clusters, len(latents))
    if n_clusters == 1:
        return np.zeros(len(latents), int)
    raw = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage).fit_predict(latents)
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
        similarity = -cdist(latents[rows], latents[rows])  # candidates and universe: the cluster
        picks.append(rows[greedy_max_cover(similarity, need)])
    taken = np.zeros(len(sizes), int)
    ranking = np.empty(n, int)
    for t, c in enumerate(order):
        ranking[t] = picks[c][taken[c]]
        taken[c] += 1
    return ranking


def _load_latents(ctx: SuggestionContext, pool: np.ndarray) -> np.ndarray:
    path = ctx.inputs.get("latents")
    if path is None:
        raise ValueError("clsmc needs the VAE latents: inputs['latents'] = path of latents.npy")
    latents = np.load(path, mmap_mode="r")
    if latents.ndim != 2 or latents.shape[0] <= int(pool.max()):
        raise ValueError(f"clsmc: {path} has shape {latents.shape}; expected one row per sample id "
                         f"of the store (at least {int(pool.max()) + 1})")
    return np.asarray(latents[pool])


def ranked_pool(ctx: SuggestionContext, n: int) -> np.ndarray:
    """Sample ids: the first ``n`` of the ranking of the pool (annotated and unannotated)."""
    pool = np.union1d(ctx.annotated, ctx.unannotated).astype(int)
    p = method_params(ctx.params)
    return pool[nested_ranking(_load_latents(ctx, pool), n, p["n_clusters"], p["linkage"])]


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
