"""Sanity check of the whole premise: which slices are annotated changes the model. On the tiny
data, a training set of tumour-free slices gives a clearly worse model than a random one of the
same size, trained the same way from the same initial weights."""
import numpy as np

from slicepick.evaluation import evaluate_model
from slicepick.models import build_seeded, unet_spec
from slicepick.training import TrainConfig, train_segmentation


def _wt_dice(store, ids, tmp_path, name):
    model = build_seeded(unet_spec(store.n_channels, store.n_classes, [8, 16, 16, 32, 32, 8]), 0)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=3e-3, seed=0, min_steps=150, loss="dice_ce")
    train_segmentation(model, store, ids, cfg, device="cpu", log_csv=tmp_path / f"{name}.csv",
                       checkpoint=tmp_path / f"{name}.pt")
    scores = evaluate_model(model, store, "cpu")
    return float(scores[scores.region == "WT"].dice.mean())


def test_tumour_free_slices_train_a_clearly_worse_model(tiny_store, tmp_path):
    pool = tiny_store.pool_ids
    has_tumour = (np.asarray(tiny_store.labels[pool]) != 0).any(axis=(1, 2))
    blank = pool[~has_tumour]
    n = min(len(blank), 20)  # 20 random slices hold a few tumour slices (7 of 20 here, 4 of 12)
    assert n >= 16, "the tiny data should have tumour-free slices"
    random = np.sort(np.random.default_rng(0).choice(pool, n, replace=False))
    assert has_tumour[np.searchsorted(pool, random)].any()
    blank_dice = _wt_dice(tiny_store, blank[:n], tmp_path, "blank")
    random_dice = _wt_dice(tiny_store, random, tmp_path, "random")
    assert random_dice - blank_dice >= 0.25, (random_dice, blank_dice)
