"""The data manifold (Sec. 2.1): a VAE trained once on the unannotated pool, and its latents.

The network is MONAI's ``VarAutoEncoder`` in the paper's shape (Sec. 3.2): four levels, each a
residual unit with batch normalisation and leaky ReLU (slope 1e-2), stride 2 per level, so H and
W must be divisible by 16 (48x48 tiny default: 3x3 at the bottom; 240x240 BraTS: 15x15).

Images in the slice store are z-scored inside the brain (mean 0, std 1, background 0, values
below 0 and above 1 are common), not intensities in [0, 1]. So the decoder ends in a plain
convolution (no sigmoid, which could never reach those values) and the reconstruction term of
Eq. 1 is the squared error on the z-scored values themselves.

Eq. 1 is summed per sample and averaged over the batch: squared error summed over the pixels plus
the KL divergence summed over the latent dimensions. This is the evidence lower bound of a unit-
variance Gaussian decoder (up to constants), so both terms are on the same per-sample scale; the
per-pixel mean of the squared error beside a per-sample KL would weigh the KL by H*W*C times more
and collapse every latent onto the prior, leaving no manifold to search.
"""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.networks.nets import VarAutoEncoder  # noqa: E402

from slicepick.models import save_model  # noqa: E402
from slicepick.seeding import stream_seed  # noqa: E402

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "loss", "mse", "kl", "seconds", "samples_per_s", "n_samples"]


def build_vae(in_channels: int, height: int, width: int, latent_dim: int, channels) -> VarAutoEncoder:
    """VAE for ``(B, in_channels, height, width)`` images; one level (stride 2) per entry of ``channels``."""
    channels = tuple(int(c) for c in channels)
    factor = 2 ** len(channels)
    if height % factor or width % factor:
        raise ValueError(f"VAE: image size {height}x{width} must be divisible by {factor} "
                         f"(stride 2 at each of the {len(channels)} levels); resize the dataset")
    return VarAutoEncoder(
        spatial_dims=2, in_shape=(int(in_channels), int(height), int(width)), out_channels=int(in_channels),
        latent_size=int(latent_dim), channels=channels, strides=(2,) * len(channels), num_res_units=1,
        act=("leakyrelu", {"negative_slope": 0.01}), norm="batch",
        use_sigmoid=False,  # z-scored targets (module docstring)
        use_mean_at_inference=True)


def vae_spec(model: VarAutoEncoder) -> dict:
    """What rebuilds the network, read from the network itself."""
    return {"kind": "vae", "in_channels": int(model.in_channels), "height": int(model.in_shape[0]),
            "width": int(model.in_shape[1]), "latent_dim": int(model.latent_size),
            "channels": [int(c) for c in model.channels]}


def vae_loss(reconstruction, images, mu, logvar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1 per sample, mean over the batch: (loss, per-pixel MSE, KL).

    ``reconstruction`` and ``images`` are ``(B, C, H, W)``; ``mu``, ``logvar`` are ``(B, d)``.
    KL(N(mu, sigma^2) || N(0, I)) in closed form: -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    squared_error = (reconstruction - images).pow(2)
    reconstruction_term = squared_error.flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return reconstruction_term + kl, squared_error.mean().detach(), kl.detach()


def _batches(store, sample_ids: np.ndarray, batch_size: int, device):
    """Image batches ``(B, C, H, W)`` in the given order, read from the memory map batch by batch."""
    for i in range(0, len(sample_ids), batch_size):
        ids = sample_ids[i:i + batch_size]
        order = np.argsort(ids)  # sorted reads from the memory map, then back to the asked order
        images = np.empty((len(ids),) + store.images.shape[1:], np.float32)
        images[order] = store.images[ids[order]]
        yield torch.as_tensor(images, device=device)


def train_vae(store, sample_ids, *, latent_dim: int, channels, epochs: int, batch_size: int = 16,
              lr: float = 1e-4, seed: int = 0, device="cpu", log_csv: str | Path | None = None) -> VarAutoEncoder:
    """Train the VAE on the pool images ``sample_ids`` (no labels) with Adam and Eq. 1.

    Paper (Sec. 3.2): 50 epochs, batch 16, lr 1e-4. Deterministic for a seed: initialisation,
    data order and the reparameterisation noise draw from torch RNGs seeded inside a fork, so
    the caller's global RNG state is left as it was. Writes one row per epoch to ``log_csv``.
    """
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    if len(sample_ids) == 0:
        raise ValueError("VAE: no pool samples to train on")
    device = torch.device(device)
    _, _, height, width = store.images.shape
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(stream_seed(seed, "vae", "init"))
        model = build_vae(store.n_channels, height, width, latent_dim, channels).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        history = []
        for epoch in range(epochs):
            order_rng = np.random.default_rng(stream_seed(seed, "vae", "epoch", epoch))
            torch.manual_seed(stream_seed(seed, "vae", "noise", epoch))
            model.train()
            t0, total, total_mse, total_kl, seen = time.perf_counter(), 0.0, 0.0, 0.0, 0
            for images in _batches(store, order_rng.permutation(sample_ids), batch_size, device):
                optimiser.zero_grad()
                reconstruction, mu, logvar, _ = model(images)
                loss, mse, kl = vae_loss(reconstruction, images, mu, logvar)
                loss.backward()
                optimiser.step()
                n = len(images)
                total, total_mse, total_kl, seen = (total + float(loss.detach()) * n, total_mse + float(mse) * n,
                                                    total_kl + float(kl) * n, seen + n)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "loss": total / seen, "mse": total_mse / seen, "kl": total_kl / seen,
                   "seconds": round(seconds, 3), "samples_per_s": round(seen / max(seconds, 1e-9), 1),
                   "n_samples": seen}
            history.append(row)
            log.info("VAE epoch %d/%d loss %.2f (MSE per pixel %.4f, KL %.2f) time %.2fs %.1f samples/s",
                     epoch + 1, epochs, row["loss"], row["mse"], row["kl"], seconds, row["samples_per_s"])
    if log_csv is not None:
        with open(log_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(history)
    model.eval()
    return model


def encode_images(model: VarAutoEncoder, images: torch.Tensor) -> torch.Tensor:
    """Latent means ``(B, d)`` of images ``(B, C, H, W)``: E(x) of Eq. 4, deterministic.

    Runs in the dtype of ``model`` (GGS encodes in float64, see ``strategies/ggs.py``).
    """
    mu, _ = model.encode_forward(images)
    return mu


@torch.no_grad()
def encode(model: VarAutoEncoder, store, sample_ids, device="cpu", batch_size: int = 256) -> np.ndarray:
    """Latent means ``(N, d)`` float32 of the samples ``sample_ids``, in that order."""
    model.eval()
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    out = [encode_images(model, images).cpu().numpy() for images in _batches(store, sample_ids, batch_size, device)]
    if not out:
        return np.zeros((0, model.latent_size), np.float32)
    return np.concatenate(out).astype(np.float32)


def save_vae(path: str | Path, model: VarAutoEncoder, **extra) -> None:
    """Spec + weights, loadable with ``torch.load(weights_only=True)`` (no pickle)."""
    save_model(path, model, vae_spec(model), **extra)


def load_vae(path: str | Path, device="cpu") -> tuple[VarAutoEncoder, dict]:
    """The VAE saved by :func:`save_vae`, in eval mode, and the saved payload."""
    payload = torch.load(path, map_location=device, weights_only=True)
    spec = payload["spec"]
    if spec.get("kind") != "vae":
        raise ValueError(f"{path}: not a VAE (model kind '{spec.get('kind')}')")
    model = build_vae(spec["in_channels"], spec["height"], spec["width"], spec["latent_dim"], spec["channels"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


@torch.no_grad()
def plot_reconstructions(model: VarAutoEncoder, store, sample_ids, out_png, out_pdf, modality: str | None = None,
                         device="cpu") -> None:
    """Inputs (top row) above their reconstructions (bottom row) for one modality.

    ``modality`` is a name from the store's modalities; the first one when not given. Each
    column shares the input's grey scale (1st-99th percentile of its brain pixels, and 0), so
    intensity errors show as well as blur.
    """
    modalities = list(store.meta["modalities"])
    modality = modality or modalities[0]
    if modality not in modalities:
        raise ValueError(f"modality '{modality}' is not one of {modalities}")
    channel = modalities.index(modality)
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    model.eval()
    images = np.array(store.images[sample_ids])
    reconstructions = model.decode_forward(encode_images(model, torch.as_tensor(images, device=device)),
                                           use_sigmoid=False).cpu().numpy()
    n = len(sample_ids)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 0.8, 4.2), squeeze=False)
    for j, sid in enumerate(sample_ids):
        brain = images[j, channel][images[j, channel] != 0]  # background is 0 after z-scoring
        vmin, vmax = np.percentile(brain, [1, 99]) if brain.size else (-1.0, 1.0)
        vmin, vmax = min(vmin, 0.0), max(vmax, 0.0)
        for i, picture in enumerate((images[j, channel], reconstructions[j, channel])):
            ax = axes[i, j]
            ax.imshow(picture.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"sample {sid}", fontsize=9)
    axes[0, 0].set_ylabel("input", fontsize=10)
    axes[1, 0].set_ylabel("reconstruction", fontsize=10)
    fig.suptitle(f"VAE reconstructions ({modality}, z-scored; latent dim {model.latent_size})", fontsize=11)
    fig.tight_layout()
    for path in (out_png, out_pdf):
        fig.savefig(path, dpi=150)
    plt.close(fig)
