"""oracle: the unannotated samples on which the current model has the lowest Dice.

Uses the ground truth of the pool, so it exists only in simulation: an upper reference for
what a suggestion method could gain. Per-sample Dice is the mean over foreground classes of
the 2D slice, with a class absent from both prediction and reference counting as 1.

Ties: on tumour-free slices that the model also predicts empty every Dice is exactly 1, so at
a small budget dozens of candidates tie. They are ordered by a random permutation drawn from the
round's seeded generator (``ctx.rng``), not by sample id: the lowest ids are neighbouring slices
of the first cases, and taking them would bias the oracle toward a few volumes. The same seed and
round give the same set.

Cost: the pool is predicted and scored in batches of ``_BATCH`` under ``torch.inference_mode``,
so memory stays at one batch's one-hot maps whatever the pool size.
"""
from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from slicepick.strategies.base import SuggestionContext, check_request
from slicepick.training import predict_classes

_BATCH = 256  # samples predicted and scored at a time
NEEDS_GROUND_TRUTH = True  # the labels of unannotated samples: simulation only, refused by annotate mode


def per_sample_dice(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean foreground Dice per sample; pred and ref are (N, H, W) class maps."""
    p = one_hot(torch.as_tensor(pred[:, None], dtype=torch.long), n_classes)
    r = one_hot(torch.as_tensor(ref[:, None], dtype=torch.long), n_classes)
    return compute_dice(p, r, include_background=False, ignore_empty=False).mean(1).numpy()


def pool_dice(model, store, sample_ids, device) -> np.ndarray:
    """Dice of the model's prediction per sample id, in order, one batch at a time."""
    sample_ids = np.asarray(sample_ids)
    out = [np.zeros(0, np.float32)]
    for start in range(0, len(sample_ids), _BATCH):
        ids = sample_ids[start:start + _BATCH]
        pred = predict_classes(model, store, ids, device)
        out.append(per_sample_dice(pred, np.array(store.labels[ids]), store.n_classes))
    return np.concatenate(out)


def lowest_first(dice: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions ordered by increasing Dice, equal Dice in a random order drawn from ``rng``."""
    return np.lexsort((rng.permutation(len(dice)), dice))


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    check_request(k, ctx)
    candidates = np.asarray(ctx.unannotated)
    dice = pool_dice(ctx.model, ctx.store, candidates, ctx.device)
    return [int(i) for i in candidates[lowest_first(dice, ctx.rng)[:k]]]
