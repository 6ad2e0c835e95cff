"""The shared training loop: it learns, it is reproducible, it resumes from its checkpoint."""
import numpy as np
import pandas as pd
import pytest
import torch

from slicepick.models import build_unet, load_model, save_model, unet_spec
from slicepick.training import TrainConfig, predict_classes, train_segmentation

FEATURES = [4, 8, 8, 16, 16, 4]


def _stop_at(epoch_to_stop):
    def on_epoch_start(model, epoch, epochs):
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt  # the job is killed here; its last checkpoint is on disk
    return on_epoch_start


def _train(store, tmp_path, epochs, seed=0, name="a", model=None, lr_schedule="constant", stop_at_epoch=None):
    torch.manual_seed(seed)
    model = model or build_unet(4, 4, FEATURES)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, augment={"enabled": True}, seed=seed,
                      lr_schedule=lr_schedule)
    history = train_segmentation(model, store, store.pool_ids[:24], cfg, device="cpu",
                                 log_csv=tmp_path / f"{name}.csv", checkpoint=tmp_path / f"{name}.ckpt", run_id=name,
                                 on_epoch_start=None if stop_at_epoch is None else _stop_at(stop_at_epoch))
    return model, history


def test_loss_decreases_and_log_is_written(tiny_store, tmp_path, caplog):
    caplog.set_level("INFO")
    _, history = _train(tiny_store, tmp_path, epochs=8)
    assert history[-1]["loss"] < history[0]["loss"]
    log = pd.read_csv(tmp_path / "a.csv")
    assert list(log.columns) == ["epoch", "loss", "seg_loss", "seconds", "samples_per_s", "n_samples"]
    assert np.allclose(log.loss, log.seg_loss)  # no method term: the loss is the segmentation loss
    assert log.epoch.tolist() == list(range(1, 9)) and (log.n_samples == 24).all()
    assert "epoch 8/8 loss" in caplog.text and "samples/s" in caplog.text


def test_same_seed_same_weights_other_seed_differs(tiny_store, tmp_path):
    a, _ = _train(tiny_store, tmp_path, 2, seed=0, name="a")
    b, _ = _train(tiny_store, tmp_path, 2, seed=0, name="b")
    c, _ = _train(tiny_store, tmp_path, 2, seed=1, name="c")
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_resume_from_checkpoint_is_bit_exact(tiny_store, tmp_path, lr_schedule):
    full, _ = _train(tiny_store, tmp_path, 4, name="full", lr_schedule=lr_schedule)
    # an interrupted run: killed after 2 of its 4 epochs, then the job starts again with a fresh process state
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_store, tmp_path, 4, name="resumed", lr_schedule=lr_schedule, stop_at_epoch=2)
    torch.manual_seed(999)  # a restarted job does not share the RNG state of the killed one
    resumed, history = _train(tiny_store, tmp_path, 4, name="resumed", model=build_unet(4, 4, FEATURES),
                              lr_schedule=lr_schedule)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for va, vb in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(va, vb)


def test_save_load_roundtrip_weights_only(tiny_store, tmp_path):
    model = build_unet(4, 4, FEATURES).eval()
    save_model(tmp_path / "m.pt", model, unet_spec(4, 4, FEATURES))
    loaded, payload = load_model(tmp_path / "m.pt")
    ids = tiny_store.pool_ids[:5]
    assert np.array_equal(predict_classes(model, tiny_store, ids, "cpu"), predict_classes(loaded, tiny_store, ids, "cpu"))
    assert payload["spec"]["features"] == FEATURES


def test_step_floor_trains_small_sets_for_more_epochs():
    from slicepick.training import epochs_for

    assert epochs_for(TrainConfig(epochs=10, batch_size=16, min_steps=0), 15) == 10  # the paper's setting
    assert epochs_for(TrainConfig(epochs=10, batch_size=16, min_steps=100), 15) == 100  # 1 batch an epoch
    assert epochs_for(TrainConfig(epochs=10, batch_size=16, min_steps=100), 40) == 34  # 3 batches: 102 steps
    assert epochs_for(TrainConfig(epochs=10, batch_size=16, min_steps=100), 800) == 10  # 50 a epoch: E wins


def test_step_floor_reaches_the_training_loop(tiny_store, tmp_path):
    model = build_unet(4, 4, FEATURES)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, min_steps=6)
    history = train_segmentation(model, tiny_store, tiny_store.pool_ids[:16], cfg, device="cpu",
                                 log_csv=tmp_path / "log.csv", checkpoint=tmp_path / "ck.pt")
    assert len(history) == 3  # two batches an epoch: three epochs make the six steps


def test_losses_by_name():
    from slicepick.training import segmentation_loss

    logits = torch.zeros(2, 4, 8, 8, requires_grad=True)
    labels = torch.zeros(2, 1, 8, 8)
    from monai.losses import DiceLoss

    foreground_dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=False)(logits, labels)
    dice_ce = segmentation_loss("dice_ce")(logits, labels)
    # dice_ce: Dice over the foreground classes, plus cross-entropy, log(4) for uniform logits
    assert torch.isclose(dice_ce - foreground_dice, torch.log(torch.tensor(4.0)), atol=1e-4)
    # dice: the paper's Dice over every class, background included (here partly right: lower)
    assert segmentation_loss("dice")(logits, labels) < foreground_dice
    with pytest.raises(ValueError, match="training.loss 'focal'"):
        segmentation_loss("focal")


def test_learning_rate_schedules():
    from slicepick.training import learning_rate

    constant = TrainConfig(epochs=1, lr=1e-3)
    assert learning_rate(constant, 0, 100) == learning_rate(constant, 99, 100) == 1e-3  # the paper's Adam
    cosine = TrainConfig(epochs=1, lr=1e-3, lr_schedule="cosine")
    rates = [learning_rate(cosine, step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(1e-3) and rates[50] == pytest.approx(5e-4)
    assert all(a > b for a, b in zip(rates, rates[1:])) and 0 < rates[-1] < 1e-6  # falls to about 0
    with pytest.raises(ValueError, match="training.lr_schedule must be one of"):
        learning_rate(TrainConfig(epochs=1, lr_schedule="step"), 0, 10)


def test_cosine_schedule_reaches_the_optimiser(tiny_store, tmp_path, monkeypatch):
    seen = []

    class Spy(torch.optim.Adam):
        def step(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    _train(tiny_store, tmp_path, 2, lr_schedule="cosine")  # 24 samples, batch 8: 6 steps
    assert len(seen) == 6 and seen[0] == pytest.approx(1e-2) and seen == sorted(seen, reverse=True)
