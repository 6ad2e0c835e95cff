"""LL: ranking loss, the head's gradient switch, training round, save/load, suggestions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import split_pool
from slicepick.evaluation import evaluate_model
from slicepick.models import build_seeded, load_model, save_model
from slicepick.strategies import ll
from slicepick.strategies.base import SuggestionContext
from slicepick.training import TrainConfig


def test_ranking_loss_sign():
    target = torch.tensor([1.0, 0.2, 0.0, 0.5])  # pairs: (1.0, 0.0) and (0.2, 0.5)
    right = torch.tensor([2.0, 0.0, 1.0, 1.0])  # differences +1 and -1: right order, beyond the margin
    assert ll.ranking_loss(right, target, 0.5).item() == 0.0
    reversed_ = torch.tensor([1.0, 1.0, 2.0, 0.0])  # differences -1 and +1: both pairs wrong
    assert ll.ranking_loss(reversed_, target, 0.5).item() == pytest.approx(1.5)
    within_margin = torch.tensor([1.2, 0.0, 1.0, 0.2])  # right order, gaps 0.2: 0.3 short each
    assert ll.ranking_loss(within_margin, target, 0.5).item() == pytest.approx(0.3)
    lone = torch.tensor([3.0], requires_grad=True)
    assert ll.ranking_loss(lone, torch.tensor([1.0]), 0.5).item() == 0.0  # odd sample: unpaired


def test_stop_epoch():
    assert ll.head_gradient_stop_epoch(50, 0.6) == 30
    assert ll.head_gradient_stop_epoch(10, 0.6) == 6
    assert ll.head_gradient_stop_epoch(2, 0.6) == 1


def test_head_gradient_reaches_backbone_only_before_the_switch(tiny_spec):
    model = build_seeded(ll.ll_spec(tiny_spec), 0).train()
    x = torch.randn(4, 4, 32, 32)
    encoder = model.unet.conv_0.conv_0.conv.weight
    decoder = model.unet.final_conv.weight
    for head_gradient in (True, False):
        model.zero_grad(set_to_none=True)
        model.head_gradient = head_gradient
        model(x)
        ll.ranking_loss(model.head_output(), torch.tensor([1.0, 0.0, 0.0, 1.0]), 0.5).backward()
        assert model.head.out.weight.grad is not None and model.head.out.weight.grad.abs().sum() > 0
        assert decoder.grad is None  # the head never reads the decoder
        if head_gradient:
            assert encoder.grad is not None and encoder.grad.abs().sum() > 0
        else:
            assert encoder.grad is None or encoder.grad.abs().sum() == 0


def test_train_round_save_load_evaluate_and_suggest(tiny_store, tiny_spec, tmp_path):
    annotated, unannotated = split_pool(tiny_store, 12)
    cfg = TrainConfig(epochs=2, batch_size=8, seed=3)
    kw = dict(device="cpu", checkpoint_dir=tmp_path, run_id="r0", params={})
    model, spec = ll.train_round(tiny_store, annotated, None, tiny_spec, cfg, log_csv=tmp_path / "log.csv", **kw)
    assert spec == {"kind": "unet_ll", "unet": tiny_spec, "head_width": 128}
    save_model(tmp_path / "model.pt", model, spec)
    loaded, _ = load_model(tmp_path / "model.pt")
    loaded.eval(), model.eval()
    x = torch.as_tensor(np.array(tiny_store.images[unannotated[:5]]))
    with torch.no_grad():
        logits = loaded(x)
        assert logits.shape == (5, tiny_store.n_classes, 32, 32)  # forward: segmentation logits
        assert torch.allclose(logits, model(x))
        assert torch.allclose(loaded.predicted_loss(x), model.predicted_loss(x))
    assert set(evaluate_model(loaded, tiny_store, "cpu").region) == {"WT", "TC", "ET"}
    # the next round fine-tunes the saved model
    _, spec1 = ll.train_round(tiny_store, annotated, tmp_path / "model.pt", tiny_spec, cfg,
                              log_csv=tmp_path / "log1.csv", **{**kw, "run_id": "r1"})
    assert spec1 == spec
    ctx = SuggestionContext(tiny_store, annotated, unannotated, annotated, 0, np.random.default_rng(0), {},
                            loaded, "cpu")
    chosen = ll.suggest(4, ctx)
    scores = ll.predicted_losses(loaded, tiny_store, unannotated, "cpu")
    assert chosen == [int(i) for i in unannotated[np.argsort(-scores, kind="stable")[:4]]]
    assert ll.suggest(4, ctx) == chosen


def test_train_round_switches_the_head_gradient_at_sixty_percent(tiny_store, tiny_spec, tmp_path, monkeypatch):
    seen = []

    def spy(model, store, ids, cfg, **kw):
        for epoch in range(cfg.epochs):
            kw["on_epoch_start"](model, epoch, cfg.epochs)
            seen.append(model.head_gradient)
        return []

    monkeypatch.setattr(ll, "train_segmentation", spy)
    ll.train_round(tiny_store, tiny_store.pool_ids[:4], None, tiny_spec, TrainConfig(epochs=5), device="cpu",
                   log_csv=tmp_path / "log.csv", checkpoint_dir=tmp_path, run_id="x", params={})
    assert seen == [True, True, True, False, False]
