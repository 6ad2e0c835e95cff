"""The VAE manifold (slicepick.vae) on a tiny prepared store."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from slicepick.vae import (build_vae, encode, load_vae, plot_reconstructions, save_vae, train_vae,
                           vae_loss)

CHANNELS = (4, 8, 8, 16)


@pytest.fixture(scope="module")
def store(tiny_store):
    return tiny_store


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    log_csv = tmp_path_factory.mktemp("vae_run") / "vae_log.csv"
    model = train_vae(store, store.pool_ids, latent_dim=3, channels=CHANNELS, epochs=4, batch_size=16, lr=1e-3,
                      seed=0, device="cpu", log_csv=log_csv)
    return model, pd.read_csv(log_csv)


def test_training_lowers_the_loss_and_logs_every_epoch(trained):
    _, history = trained
    assert list(history.epoch) == [1, 2, 3, 4]
    assert {"loss", "mse", "kl", "seconds", "samples_per_s"} <= set(history.columns)
    assert history.loss.iloc[-1] < history.loss.iloc[0]


def test_training_is_deterministic_for_a_seed(store, trained):
    model, _ = trained
    torch.manual_seed(123)  # the caller's global RNG neither matters nor is changed
    before = torch.get_rng_state()
    again = train_vae(store, store.pool_ids, latent_dim=3, channels=CHANNELS, epochs=4, batch_size=16, lr=1e-3,
                      seed=0, device="cpu", log_csv=None)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_encode_gives_deterministic_means(store, trained):
    model, _ = trained
    ids = store.pool_ids[:10]
    z = encode(model, store, ids, "cpu", batch_size=4)
    assert z.shape == (10, 3) and z.dtype == np.float32
    np.testing.assert_array_equal(z, encode(model, store, ids, "cpu", batch_size=4))
    # batching changes only float rounding
    np.testing.assert_allclose(z[3:4], encode(model, store, ids[3:4], "cpu"), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(store, trained, tmp_path):
    model, _ = trained
    save_vae(tmp_path / "model.pt", model)
    loaded, payload = load_vae(tmp_path / "model.pt")
    assert payload["spec"] == {"kind": "vae", "in_channels": 4, "height": 32, "width": 32, "latent_dim": 3,
                               "channels": list(CHANNELS)}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = store.pool_ids
    np.testing.assert_array_equal(encode(model, store, ids), encode(loaded, store, ids))


def test_reconstructions_figure(store, trained, tmp_path):
    model, _ = trained
    plot_reconstructions(model, store, store.pool_ids[:4], tmp_path / "rec.png", tmp_path / "rec.pdf",
                         modality="flair")
    assert (tmp_path / "rec.png").stat().st_size > 0 and (tmp_path / "rec.pdf").stat().st_size > 0
    with pytest.raises(ValueError, match="not one of"):
        plot_reconstructions(model, store, store.pool_ids[:2], tmp_path / "x.png", tmp_path / "x.pdf", modality="dwi")


def test_kl_term_is_the_closed_form():
    mu = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[0.2, -0.3]])
    x = torch.zeros(1, 1, 2, 2)
    _, mse, kl = vae_loss(x, x, mu, logvar)
    expected = 0.5 * sum(m * m + np.exp(lv) - 1 - lv for m, lv in [(0.5, 0.2), (-1.0, -0.3)])
    assert mse == 0 and kl.item() == pytest.approx(expected, rel=1e-6)


def test_image_size_must_fit_the_levels():
    with pytest.raises(ValueError, match="divisible by 16"):
        build_vae(4, 40, 40, 3, CHANNELS)
