"""Selection diagnostics on hand-made selections whose answers are known."""
import numpy as np
import pandas as pd
import pytest

from slicepick.diagnostics import COLUMNS, adjacent_share, latent_coverage_fn, selection_stats


def test_adjacent_share_counts_neighbours_in_the_same_case_only():
    sel = pd.DataFrame({"case": ["a", "a", "a", "b"], "z": [3, 4, 10, 4], "round_added": [0, 1, 1, 1]})
    added = sel[sel.round_added == 1]
    # a/4 touches a/3; a/10 touches nothing; b/4 has no neighbour in b
    assert adjacent_share(sel, added) == pytest.approx(1 / 3)


def test_latent_coverage_is_mean_distance_to_the_nearest_annotated():
    latents = np.array([[0.0], [1.0], [3.0], [10.0]])
    coverage = latent_coverage_fn(latents, np.arange(4))
    assert coverage([0]) == pytest.approx((0 + 1 + 3 + 10) / 4)
    assert coverage([1, 3]) == pytest.approx((1 + 0 + 2 + 0) / 4)


def test_table_of_real_selections(tiny_store, tmp_path):
    pool = tiny_store.index[tiny_store.index.subset == "train"]
    fg = (np.asarray(tiny_store.labels) != 0).sum(axis=(1, 2))
    empty, full = pool[fg[pool.sample_id] == 0], pool[fg[pool.sample_id] > 0]
    paths = []
    for method, rows in (("blank", empty.head(4)), ("tumour", full.head(4))):
        run = tmp_path / "runs" / method / "seed0" / "round0"
        run.mkdir(parents=True)
        rows.assign(round_added=0)[["sample_id", "case", "z", "round_added"]].to_csv(run / "selection.csv", index=False)
        paths.append(run / "selection.csv")
    latents = np.random.default_rng(0).normal(size=(len(tiny_store.index), 3))
    np.save(tmp_path / "latents.npy", latents)
    stats = selection_stats(paths, tiny_store.folder, tmp_path / "latents.npy").set_index("method")
    assert list(stats.reset_index().columns) == COLUMNS
    assert stats.loc["blank", "foreground_share"] == 0 and stats.loc["blank", "mean_foreground_px"] == 0
    assert stats.loc["tumour", "foreground_share"] == 1 and stats.loc["tumour", "mean_foreground_px"] > 0
    assert (stats.n_selected == 4).all() and (stats.n_added == 4).all()
    assert (stats.latent_coverage > 0).all()
