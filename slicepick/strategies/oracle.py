"""oracle: the unannotated samples on which the current model has the lowest Dice.

Uses the ground truth of the pool, so it exists only in simulation: an upper reference for
what a suggestion method could gain. Per-sample Dice is the mean over foreground classes of
the 2D slice, with a class absent from both prediction and reference counting as 1.
"""
from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from slicepick.strategies.base import SuggestionContext, check_request
from slicepick.training import predict_classes

NEEDS_GROUND_TRUTH = True  # the labels of unannotated samples: simulation only, refused by annotate mode


def per_sample_dice(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean foreground Dice per sample; pred and ref are (N, H, W) class maps."""
    p = one_hot(torch.as_tensor(pred[:, None], dtype=torch.long), n_classes)
    r = one_hot(torch.as_tensor(ref[:, None], dtype=torch.long), n_classes)
    return compute_dice(p, r, include_background=False, ignore_empty=False).mean(1).numpy()


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    check_request(k, ctx)
    candidates = np.asarray(ctx.unannotated)
    pred = predict_classes(ctx.model, ctx.store, candidates, ctx.device)
    dice = per_sample_dice(pred, np.array(ctx.store.labels[candidates]), ctx.store.n_classes)
    order = np.lexsort((candidates, dice))  # lowest Dice first; ties by id, deterministic
    return [int(i) for i in candidates[order[:k]]]
