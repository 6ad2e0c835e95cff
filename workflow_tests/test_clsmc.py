"""ClsMC: nested ranking, share by cluster size, round 0 and later rounds."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from slicepick.strategies import clsmc
from slicepick.strategies.base import SuggestionContext

SIZES = (40, 25, 12, 3)


def blobs(seed=0):
    """Four well-separated blobs in 2D, sizes ``SIZES``, rows shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    points = np.concatenate([c + rng.normal(scale=0.5, size=(n, 2)) for c, n in zip(centres, SIZES)])
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    order = rng.permutation(len(points))
    return points[order], truth[order]


@pytest.mark.parametrize("seed", range(20))
def test_allocation_stays_within_one_of_the_quota_at_every_budget(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=rng.integers(1, 9))
    order = clsmc.allocation_order(sizes, int(sizes.sum()))
    counts = np.zeros(len(sizes))
    for t, c in enumerate(order, start=1):
        counts[c] += 1
        assert np.all(np.abs(counts - t * sizes / sizes.sum()) < 1)
    assert np.array_equal(counts, sizes)


def test_ranking_is_nested_and_covers_every_large_cluster():
    latents, truth = blobs()
    full = clsmc.nested_ranking(latents, len(latents), n_clusters=4, linkage="ward")
    assert sorted(full) == list(range(len(latents)))
    labels = clsmc.cluster_latents(latents, 4, "ward")
    assert len(set(zip(labels, truth))) == 4  # the blobs are found
    for n in (1, 3, 5, 9, 20, 41, 80):
        prefix = clsmc.nested_ranking(latents, n, n_clusters=4, linkage="ward")
        assert np.array_equal(prefix, full[:n])  # every budget's set is a prefix of the next
        counts = np.bincount(truth[prefix], minlength=4)
        quota = n * np.array(SIZES) / len(latents)
        assert np.all(counts[quota >= 1] >= 1)  # a cluster owed a sample has one
        assert np.all(np.abs(counts - quota) < 1)


def test_first_pick_of_a_cluster_is_its_medoid():
    latents, _ = blobs(1)
    first = clsmc.nested_ranking(latents, 1, n_clusters=1, linkage="ward")[0]
    assert first == np.argmin(cdist(latents, latents).sum(1))


def test_initial_selection_and_suggest_follow_the_ranking(tmp_path):
    latents, _ = blobs(2)
    store_rows = np.concatenate([np.zeros((5, 2)), latents])  # sample ids 0-4 are test slices
    np.save(tmp_path / "latents.npy", store_rows)
    pool = np.arange(5, 5 + len(latents))
    params = {"n_clusters": 4, "linkage": "ward"}
    clsmc.write_ranking(tmp_path / "ranking.npy", pool, tmp_path / "latents.npy", params)  # once per latent space
    inputs = {"ranking": str(tmp_path / "ranking.npy")}
    ranking = pool[clsmc.nested_ranking(latents, len(pool), 4, "ward")]
    assert np.array_equal(np.load(tmp_path / "ranking.npy"), ranking)
    clsmc.write_ranking(tmp_path / "head.npy", pool, tmp_path / "latents.npy", params, n=20)  # to the last budget
    assert np.array_equal(np.load(tmp_path / "head.npy"), ranking[:20])

    def ctx(annotated):
        return SuggestionContext(None, np.asarray(annotated, int), np.setdiff1d(pool, annotated), np.array([], int),
                                 0, np.random.default_rng(0), params, inputs=inputs)

    start = clsmc.initial_selection(ctx([]), 6)
    assert list(start) == list(ranking[:6])
    nxt = clsmc.suggest(7, ctx(start))
    assert nxt == list(ranking[6:13])
    # from a set that is not a prefix (e.g. another start): the next unannotated of the ranking
    other = ranking[[0, 2, 30]]
    assert clsmc.suggest(3, ctx(other)) == list(ranking[[1, 3, 4]])
    assert clsmc.USES_MODEL is False


def test_params_and_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="ward"):
        clsmc.method_params({"linkage": "wrd"})
    empty = SuggestionContext(None, np.array([], int), np.arange(4), np.array([], int), -1,
                              np.random.default_rng(0), {})
    with pytest.raises(ValueError, match="ranking"):
        clsmc.initial_selection(empty, 2)
    def ctx(ranking):
        np.save(tmp_path / "ranking.npy", np.asarray(ranking))
        return SuggestionContext(None, np.array([], int), np.arange(4), np.array([], int), -1,
                                 np.random.default_rng(0), {}, inputs={"ranking": str(tmp_path / "ranking.npy")})

    with pytest.raises(ValueError, match="another store"):
        clsmc.initial_selection(ctx([2, 7]), 2)  # id 7 is not in the pool 0-3
    with pytest.raises(ValueError, match="smaller schedule"):
        clsmc.initial_selection(ctx([2, 0]), 3)  # ranked as far as 2 only
    assert list(clsmc.initial_selection(ctx([2, 0]), 2)) == [2, 0]
    with pytest.raises(ValueError, match="one row per sample id"):
        clsmc.rank_pool(np.arange(5, 10), np.zeros((6, 3)), {})


def vae_like_latents(n, seed):
    """Overlapping 3-D Gaussian blobs of unequal sizes, the shape of a small VAE's latents."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(8, 3))
    weights = rng.dirichlet(np.ones(8))
    return centres[rng.choice(8, size=n, p=weights)] + 0.6 * rng.normal(size=(n, 3))


@pytest.mark.parametrize("seed", range(3))
def test_neighbour_graph_ward_agrees_with_full_ward(seed):
    from sklearn.metrics import adjusted_rand_score

    latents = vae_like_latents(1500, seed)
    full = clsmc.cluster_latents(latents, 10, "ward", full_max=len(latents))
    graph = clsmc.cluster_latents(latents, 10, "ward", full_max=0)  # forces the k-nearest-neighbour path
    assert adjusted_rand_score(full, graph) >= 0.9


@pytest.mark.parametrize("seed", range(3))
def test_graph_ward_gives_scikit_learns_connectivity_ward(seed):
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    latents = vae_like_latents(1500, seed)
    graph = clsmc.neighbour_graph(latents)
    reference = AgglomerativeClustering(n_clusters=10, linkage="ward", connectivity=graph).fit_predict(latents)
    assert adjusted_rand_score(reference, clsmc.graph_ward(latents, 10, graph)) >= 0.99


def test_weighted_ward_on_unit_weights_is_scipys_ward():
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import adjusted_rand_score

    latents = vae_like_latents(300, 4)
    ours = clsmc.weighted_ward(np.ones(len(latents)), latents, 7)
    assert len(np.unique(ours)) == 7
    assert adjusted_rand_score(fcluster(linkage(latents, "ward"), 7, "maxclust"), ours) == 1.0


def test_neighbour_graph_joins_far_apart_groups(recwarn):
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(size=(50, 2)), 100 + rng.normal(size=(50, 2)), [[50.0, -300.0]]])
    graph = clsmc.neighbour_graph(latents, k=3)
    from scipy.sparse.csgraph import connected_components

    assert connected_components(graph, directed=False)[0] == 1
    assert (graph != graph.T).nnz == 0  # symmetric
    labels = clsmc.cluster_latents(latents, 3, "ward", full_max=0)
    assert len(set(zip(labels[:50], labels[50:100]))) == 1 and len(set(labels)) == 3
    assert not [w for w in recwarn if "connected components" in str(w.message)]  # no scikit-learn completion


def test_sampled_universe_keeps_the_ranking_nested_and_shared_by_size(monkeypatch):
    latents, truth = blobs(3)
    exact = clsmc.nested_ranking(latents, len(latents), n_clusters=4, linkage="ward")
    monkeypatch.setattr(clsmc, "UNIVERSE_MAX", 7)  # clusters of 40, 25 and 12 cover a sample of 7 members
    full = clsmc.nested_ranking(latents, len(latents), n_clusters=4, linkage="ward")
    assert sorted(full) == list(range(len(latents))) and not np.array_equal(full, exact)
    for n in (2, 9, 30):
        prefix = clsmc.nested_ranking(latents, n, n_clusters=4, linkage="ward")
        assert np.array_equal(prefix, full[:n])
        assert np.all(np.abs(np.bincount(truth[prefix], minlength=4) - n * np.array(SIZES) / len(latents)) < 1)
