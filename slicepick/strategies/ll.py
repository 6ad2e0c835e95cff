"""ll: learning loss for active learning (Yoo & Kweon 2019), on our U-Net.

As re-implemented in the GGS paper (Sec. 3.2):

Model (spec kind ``unet_ll``)
    The U-Net plus a loss-prediction head fed by the encoder levels (MONAI BasicUNet ``conv_0``,
    ``down_1`` .. ``down_4``, taken by forward hooks). Per level: global average pool, FC to 128,
    ReLU; the five vectors are concatenated and an FC gives one number, the predicted loss.
    ``forward`` returns the segmentation logits (evaluation and prediction are unchanged);
    ``predicted_loss(images)`` returns the head's output.
Training (``train_round``, through the shared loop's ``extra_loss`` and ``on_epoch_start``)
    Loss = Dice loss + ``weight`` * ranking loss (Yoo & Kweon Eq. 4, lambda = 1). The target of the
    head is each sample's own Dice loss (mean over classes), detached. Ranking loss (their Eq. 2):
    the batch is split into halves and the i-th sample of the first half paired with the i-th of
    the second; per pair max(0, -sign * (predicted_i - predicted_j) + margin) with sign = +1 when
    target_i > target_j and -1 otherwise, averaged over the pairs (an odd last sample is unpaired).
    From epoch floor(``stop_head_gradient_at`` * E) on (E: the round's epochs, step floor included), the head reads detached features, so its
    loss trains the head only (paper: after 30 of 50 epochs). Rounds fine-tune for E epochs each,
    and the switch applies to each round's E epochs: every round starts with the head's gradient
    reaching the backbone and stops it after 60% of that round.
    The logged training loss is the total (Dice + weighted ranking loss).
Choice
    The k unannotated samples with the largest predicted loss (ties: lowest sample id).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slicepick.models import build_seeded, build_unet, load_model
from slicepick.strategies.base import SuggestionContext, check_request, with_defaults
from slicepick.training import TrainConfig, dice_loss, train_segmentation

DEFAULTS = {"margin": 0.5, "weight": 1.0, "stop_head_gradient_at": 0.6}
ENCODER_LEVELS = ("conv_0", "down_1", "down_2", "down_3", "down_4")
HEAD_WIDTH = 128


def method_params(params: dict | None) -> dict:
    p = {k: float(v) for k, v in with_defaults("ll", params, DEFAULTS).items()}
    if not 0.0 <= p["stop_head_gradient_at"] <= 1.0:
        raise ValueError(f"ll: stop_head_gradient_at must be a fraction of the epochs in [0, 1], "
                         f"got {p['stop_head_gradient_at']}")
    return p


class LossPredictionHead(nn.Module):
    """Predicted loss (B,) from feature maps of shape (B, C_l, H_l, W_l), one per level."""

    def __init__(self, level_channels, width: int = HEAD_WIDTH):
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(int(c), width), nn.ReLU())
            for c in level_channels)
        self.out = nn.Linear(width * len(self.levels), 1)

    def forward(self, features) -> torch.Tensor:
        return self.out(torch.cat([level(f) for level, f in zip(self.levels, features)], dim=1))[:, 0]


class UNetWithLossHead(nn.Module):
    """A BasicUNet whose encoder levels also feed a ``LossPredictionHead``.

    ``head_gradient``: whether the head's loss reaches the backbone (set per epoch in training).
    """

    def __init__(self, unet: nn.Module, head: LossPredictionHead):
        super().__init__()
        self.unet, self.head = unet, head
        self.head_gradient = True
        self._levels: dict[str, torch.Tensor] = {}
        for name in ENCODER_LEVELS:
            getattr(unet, name).register_forward_hook(self._keeper(name))

    def _keeper(self, name):
        def keep(_module, _inputs, output):
            self._levels[name] = output
        return keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits (B, n_classes, H, W); the encoder levels are kept for the head."""
        self._levels = {}
        return self.unet(x)

    def head_output(self) -> torch.Tensor:
        """The head's predicted loss (B,) for the inputs of the latest ``forward``."""
        if len(self._levels) != len(ENCODER_LEVELS):
            raise RuntimeError("head_output needs a forward pass first")
        features = [self._levels[name] for name in ENCODER_LEVELS]
        if not self.head_gradient:
            features = [f.detach() for f in features]
        return self.head(features)

    def predicted_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted loss (B,) of images ``x`` (B, C, H, W)."""
        self.forward(x)
        return self.head_output()


def ll_spec(unet_spec: dict) -> dict:
    return {"kind": "unet_ll", "unet": dict(unet_spec), "head_width": HEAD_WIDTH}


def build_from_spec(spec: dict) -> UNetWithLossHead:
    """Called by ``models.build_from_spec`` for kind ``unet_ll``."""
    u = spec["unet"]
    unet = build_unet(u["in_channels"], u["n_classes"], u["features"])
    return UNetWithLossHead(unet, LossPredictionHead(u["features"][:len(ENCODER_LEVELS)], spec["head_width"]))


def ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Yoo & Kweon's pair loss (Eq. 2) on predicted and target losses of shape (B,); a scalar."""
    half = len(predicted) // 2
    if half == 0:
        return predicted.sum() * 0.0  # no pair in a batch of one
    sign = torch.where(target[:half] > target[half:2 * half], 1.0, -1.0)
    difference = predicted[:half] - predicted[half:2 * half]
    return torch.clamp(margin - sign * difference, min=0).mean()


def head_gradient_stop_epoch(epochs: int, fraction: float) -> int:
    """First epoch (0-based) whose head loss no longer reaches the backbone: 50, 0.6 -> 30."""
    return math.floor(round(fraction * epochs, 9))


def train_round(store, sample_ids, previous_model, spec: dict, cfg: TrainConfig, *, device,
                log_csv: str | Path, checkpoint_dir: str | Path, run_id: str,
                params: dict | None = None) -> tuple[UNetWithLossHead, dict]:
    """Train U-Net and head together for the round's epochs; returns (model, its ``unet_ll`` spec).

    Same signature as ``training.train_unet_round``: ``spec`` is the base U-Net spec (round 0),
    later rounds fine-tune ``previous_model`` (a saved ``unet_ll``).
    """
    p = method_params(params)
    if previous_model is None:
        model_spec = ll_spec(spec)
        model = build_seeded(model_spec, cfg.seed)
    else:
        model, payload = load_model(previous_model, device)
        model_spec = payload["spec"]
        if model_spec["kind"] != "unet_ll":
            raise ValueError(f"ll: {previous_model} is a '{model_spec['kind']}' model, not 'unet_ll'")
    per_sample_dice = dice_loss(reduction="none")

    def on_epoch_start(model, epoch, epochs):
        model.head_gradient = epoch < head_gradient_stop_epoch(epochs, p["stop_head_gradient_at"])

    def extra_loss(model, images, labels, logits, epoch):
        target = per_sample_dice(logits, labels).flatten(1).mean(1).detach()
        return p["weight"] * ranking_loss(model.head_output(), target, p["margin"])

    train_segmentation(model, store, sample_ids, cfg, device=device, log_csv=log_csv,
                       checkpoint=Path(checkpoint_dir) / "checkpoint.pt", extra_loss=extra_loss,
                       on_epoch_start=on_epoch_start, run_id=run_id)
    model.head_gradient = True
    return model, model_spec


@torch.inference_mode()
def predicted_losses(model: UNetWithLossHead, store, sample_ids, device, batch_size: int = 64) -> np.ndarray:
    """The head's predicted loss for each sample id, in order."""
    model.eval()
    out = []
    for start in range(0, len(sample_ids), batch_size):
        ids = np.asarray(sample_ids[start:start + batch_size])
        out.append(model.predicted_loss(torch.as_tensor(store.read_images(ids), device=device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    check_request(k, ctx)
    if not isinstance(ctx.model, UNetWithLossHead):
        raise TypeError(f"ll needs its own model (kind 'unet_ll'), got {type(ctx.model).__name__}")
    ids = np.asarray(ctx.unannotated)
    order = np.lexsort((ids, -predicted_losses(ctx.model, ctx.store, ids, ctx.device)))
    return [int(i) for i in ids[order[:k]]]
