"""DAL: bootstrap ensemble, uncertainty, bottleneck features, training round, suggestions."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import split_pool
from slicepick.evaluation import evaluate_model
from slicepick.models import EnsembleMean, build_seeded, load_model, save_model
from slicepick.strategies import dal
from slicepick.strategies.base import SuggestionContext
from slicepick.training import TrainConfig


def test_uncertainty_is_zero_for_identical_members_and_hand_checked_otherwise():
    p = torch.rand(1, 3, 4, 8, 8).softmax(2).expand(4, -1, -1, -1, -1)
    assert torch.all(dal.ensemble_uncertainty(p) == 0)
    # two members, one pixel: (1, 0) and (0, 1) -> variance 0.25 for both classes
    two = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 2, 1, 1)
    assert dal.ensemble_uncertainty(two).tolist() == [0.25]


def test_bootstrap_indices():
    a = dal.bootstrap_indices(50, np.random.default_rng(3))
    assert len(a) == 50 and a.min() >= 0 and a.max() < 50 and np.all(np.diff(a) >= 0)
    assert len(np.unique(a)) < 50  # with replacement
    assert np.array_equal(a, dal.bootstrap_indices(50, np.random.default_rng(3)))


def test_bottleneck_feature_is_channel_mean_of_down_4(tiny_spec):
    unet = build_seeded(tiny_spec, 0).eval()
    x = torch.randn(3, 4, 32, 32)
    probs, feats = dal.member_outputs(unet, x)
    with torch.no_grad():
        x4 = unet.down_4(unet.down_3(unet.down_2(unet.down_1(unet.conv_0(x)))))
        assert torch.allclose(feats, x4.mean(dim=(2, 3)))
        assert torch.allclose(probs, unet(x).softmax(1))
    assert feats.shape == (3, tiny_spec["features"][4])


def test_choose_takes_uncertain_candidates_then_max_cover():
    ids = np.arange(10, 20)
    uncertainty = np.linspace(1, 0, 10)  # id 10 most uncertain
    features = np.tile([[1.0, 0.0]], (10, 1))
    features[1] = [0.0, 1.0]  # id 11 is like no other sample: it covers only itself
    # per step: the 2 most uncertain free samples, keep the 1 that covers more; the outlier (second
    # most uncertain) loses every step to a representative sample
    assert dal.choose(uncertainty, features, ids, 3, candidates=2, per_step=1) == [0, 2, 3]
    # candidates == per_step: plain top-k uncertainty
    assert sorted(dal.choose(uncertainty, features, ids, 4, candidates=4, per_step=4)) == [0, 1, 2, 3]


def test_params_are_checked():
    with pytest.raises(ValueError, match="unknown parameter"):
        dal.method_params({"n_model": 3})
    with pytest.raises(ValueError, match="candidates"):
        dal.method_params({"candidates": 5, "per_step": 10})


def test_train_round_save_load_evaluate_and_suggest(tiny_store, tiny_spec, tmp_path):
    annotated, unannotated = split_pool(tiny_store, 12)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=5)
    params = {"n_models": 2, "candidates": 4, "per_step": 2}
    kw = dict(device="cpu", checkpoint_dir=tmp_path, run_id="r0", params=params)
    model, spec = dal.train_round(tiny_store, annotated, None, tiny_spec, cfg, log_csv=tmp_path / "log0.csv", **kw)
    assert isinstance(model, EnsembleMean) and spec["kind"] == "ensemble" and len(spec["members"]) == 2
    log = pd.read_csv(tmp_path / "log0.csv")
    assert list(log.columns) == ["epoch", "loss", "seg_loss", "seconds", "samples_per_s", "n_samples", "member"]
    assert sorted(log.member) == [0, 1]
    save_model(tmp_path / "model0.pt", model, spec)
    loaded, _ = load_model(tmp_path / "model0.pt")
    x = torch.as_tensor(np.array(tiny_store.images[annotated[:4]]))
    model.eval(), loaded.eval()
    with torch.no_grad():
        out = loaded(x)
        assert torch.allclose(model(x), out)
        assert torch.allclose(out.softmax(1), loaded.member_probabilities(x).mean(0), atol=1e-6)
    assert set(evaluate_model(loaded, tiny_store, "cpu").region) == {"WT", "TC", "ET"}
    # next round fine-tunes each member of the saved ensemble
    model1, spec1 = dal.train_round(tiny_store, annotated, tmp_path / "model0.pt", tiny_spec, cfg,
                                    log_csv=tmp_path / "log1.csv", **{**kw, "run_id": "r1"})
    assert spec1 == spec
    ctx = SuggestionContext(tiny_store, annotated, unannotated, annotated, 0, np.random.default_rng(0), params,
                            loaded.eval(), "cpu")
    first = dal.suggest(5, ctx)
    assert len(set(first)) == 5 and set(first) <= set(unannotated.tolist())
    assert dal.suggest(5, ctx) == first
    # identical members: no uncertainty anywhere, the choice rests on ids and max-cover alone
    twins = EnsembleMean([loaded.members[0], copy.deepcopy(loaded.members[0])]).eval()
    u, _ = dal.ensemble_scores(twins, tiny_store, unannotated, "cpu")
    assert np.all(u == 0)
    with pytest.raises(ValueError, match="only"):
        dal.suggest(len(unannotated) + 1, ctx)
