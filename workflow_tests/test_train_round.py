"""The training step of a round: one signature for the plain U-Net, DAL and LL; resumable."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from conftest import split_pool
from slicepick.models import load_model, save_model
from slicepick.strategies import dal, ll
from slicepick.training import TrainConfig, train_unet_round

STEPS = {"unet": (train_unet_round, {}), "dal": (dal.train_round, {"n_models": 2}), "ll": (ll.train_round, {})}


def test_one_signature():
    reference = inspect.signature(train_unet_round)
    for step, _ in STEPS.values():
        assert list(inspect.signature(step).parameters) == list(reference.parameters)


@pytest.mark.parametrize("name", list(STEPS))
def test_train_save_load_and_resume(name, tiny_store, tiny_spec, tmp_path):
    step, params = STEPS[name]
    annotated, _ = split_pool(tiny_store, 8, seed=1)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=11)
    kw = dict(device="cpu", log_csv=tmp_path / "log.csv", checkpoint_dir=tmp_path, run_id="same", params=params)
    model, spec = step(tiny_store, annotated, None, tiny_spec, cfg, **kw)
    assert list(tmp_path.glob("checkpoint*.pt"))  # left for the caller to remove after saving
    save_model(tmp_path / "model.pt", model, spec)
    loaded, _ = load_model(tmp_path / "model.pt")
    # a job killed after training and run again resumes from the checkpoints: same weights
    again, _ = step(tiny_store, annotated, None, tiny_spec, cfg, **kw)
    x = torch.as_tensor(np.array(tiny_store.images[annotated[:3]]))
    with torch.no_grad():
        out = loaded.eval()(x)
        assert out.shape == (3, tiny_store.n_classes, 32, 32)
        assert torch.equal(out, again.eval()(x))
