"""The paired design: every random stream of training depends on the seed and round, never on the
method, so methods that share the start share its model, and DAL and LL start from its weights."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from slicepick.models import build_seeded, load_model
from slicepick.rounds import run_round, training_seed, train_shared_start
from slicepick.strategies import available, shares_start
from slicepick.strategies import dal, ll
from slicepick.training import TrainConfig

TRAINING = {"epochs_per_round": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu", "min_steps": 2,
            "loss": "dice_ce", "augment": {"enabled": True}}
FEATURES = [4, 8, 8, 16, 16, 4]


def test_training_seed_names_no_method():
    assert training_seed(0, 1) == training_seed(0, 1)
    assert len({training_seed(0, 0), training_seed(0, 1), training_seed(1, 0)}) == 3


def test_which_methods_share_the_start():
    sharing = {m for m in available() if shares_start(m)}
    assert sharing == {"random", "ggs", "oracle"}  # random start, plain U-Net, several rounds


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_dal_member_zero_and_ll_backbone_start_from_the_seeds_initial_weights(tiny_spec, tmp_path):
    seed = training_seed(3, 0)
    plain = _weights(build_seeded(tiny_spec, seed))
    ll_model = build_seeded(ll.ll_spec(tiny_spec), seed)
    ll_unet = {k: v for k, v in ll_model.unet.state_dict().items()}
    assert plain.keys() == ll_unet.keys()
    assert all(torch.equal(plain[k], ll_unet[k]) for k in plain)

    captured = []
    original = dal.train_segmentation
    try:
        def spy(member, *args, **kw):  # records the member's weights before training, trains nothing
            captured.append(_weights(member))
            Path(kw["log_csv"]).touch()
            return []

        dal.train_segmentation = spy
        dal.train_round(None, [0, 1, 2], None, tiny_spec, TrainConfig(epochs=1, seed=seed), device="cpu",
                        log_csv=tmp_path / "log.csv", checkpoint_dir=tmp_path, run_id="x", params={"n_models": 2})
    finally:
        dal.train_segmentation = original
    assert all(torch.equal(plain[k], captured[0][k]) for k in plain)
    assert any(not torch.equal(plain[k], captured[1][k]) for k in plain)  # other members: their own start


@pytest.fixture(scope="module")
def shared_and_random(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairing")
    schedule = [0.2, 0.4]
    common = dict(dataset="tiny", seed=0, schedule=schedule, unet_features=FEATURES, training=TRAINING)
    train_shared_start(tiny_store.folder, root / "start", **common)
    # random's own round 0 trained in its own job gives the shared start exactly
    run_round(tiny_store.folder, root / "random0", dataset="tiny", method="random", method_cfg={}, seed=0,
              round_index=0, fraction=schedule[0], schedule=schedule, unet_features=FEATURES, training=TRAINING)
    return root


def test_shared_start_is_what_any_sharing_method_would_train(shared_and_random):
    root = shared_and_random
    a, b = root / "start", root / "random0"
    assert pd.read_csv(a / "selection.csv").equals(pd.read_csv(b / "selection.csv"))
    wa, wb = load_model(a / "model.pt")[0].state_dict(), load_model(b / "model.pt")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert (ma.method == "shared").all() and (mb.method == "random").all()
    assert ma.drop(columns="method").equals(mb.drop(columns="method"))


def test_later_rounds_of_two_methods_differ_only_in_selection(shared_and_random, tiny_store):
    """Round 1 of random and oracle from the same round-0 model: same training seed, other slices."""
    root = shared_and_random
    schedule = [0.2, 0.4]
    logs = {}
    for method in ("random", "oracle"):
        out = root / f"{method}1"
        run_round(tiny_store.folder, out, previous_dir=root / "start", dataset="tiny", method=method, method_cfg={},
                  seed=0, round_index=1, fraction=schedule[1], schedule=schedule, unet_features=FEATURES,
                  training=TRAINING)
        logs[method] = pd.read_csv(out / "train_log.csv")
    sel = {m: set(pd.read_csv(root / f"{m}1" / "selection.csv").sample_id) for m in logs}
    assert sel["random"] != sel["oracle"] and len(sel["random"]) == len(sel["oracle"])
    assert logs["random"].epoch.tolist() == logs["oracle"].epoch.tolist()
