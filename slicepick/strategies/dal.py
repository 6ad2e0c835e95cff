"""dal: suggestive annotation by uncertainty and representativeness (Yang et al. 2017).

As re-implemented in the GGS paper (Sec. 3.2), with our U-Net in place of the FCN:

Model
    ``n_models`` U-Nets (paper: 4), each trained on its own bootstrap resample of the annotated
    set (drawn again every round) and fine-tuned round after round from its previous-round self.
    The model that is evaluated and saved is their ensemble (``models.EnsembleMean``: mean of the
    members' softmax outputs).
Score (uncertainty)
    For each sample, the variance over the K members of the softmax probability, taken per class
    and pixel with divisor K (population variance), then averaged over classes and pixels
    (``ensemble_uncertainty``). Zero when the members agree.
Feature (representativeness)
    Each member's bottleneck activation (MONAI BasicUNet ``down_4``), averaged over space: one
    value per channel; these vectors are averaged over the K members. Members share channel
    positions only loosely (each starts from its own initialisation), so this follows Yang et
    al.'s single descriptor rather than claiming the channels align. Similarity: cosine.
Choice
    Repeatedly: take the ``candidates`` most uncertain samples not chosen yet, choose ``per_step``
    of them by greedy max-cover of the whole unannotated set (``maxcover``), until k are chosen
    (paper: 20 candidates, 10 chosen per step). A last, smaller step keeps the same ratio of
    candidates to choices (3 to choose of ceil(3 * 20 / 10) = 6). Each step's max-cover starts
    afresh, as in the paper's repeated runs. Memory: a step's similarity is candidates x
    unannotated (20 x 36,000 at BraTS scale), never unannotated x unannotated; the pool is scored
    in batches under ``torch.inference_mode``.

Training: ``train_round`` (the round loop calls it instead of the plain U-Net step).
Training losses of all members go to one train_log.csv, with a ``member`` column.
"""
from __future__ import annotations

import csv
import math
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from slicepick.maxcover import greedy_max_cover
from slicepick.models import EnsembleMean, build_seeded, ensemble_spec, load_model
from slicepick.seeding import stream_seed
from slicepick.strategies.base import SuggestionContext, check_request, with_defaults
from slicepick.training import LOG_COLUMNS, TrainConfig, train_segmentation

DEFAULTS = {"n_models": 4, "candidates": 20, "per_step": 10}
BOTTLENECK = "down_4"  # MONAI BasicUNet: output of the last encoder block, before upsampling


def method_params(params: dict | None) -> dict:
    """The method's config block with defaults filled in, checked."""
    p = with_defaults("dal", params, DEFAULTS)
    for key in DEFAULTS:
        if int(p[key]) < 1:
            raise ValueError(f"dal: {key} must be at least 1, got {p[key]}")
        p[key] = int(p[key])
    if p["candidates"] < p["per_step"]:
        raise ValueError(f"dal: candidates ({p['candidates']}) must be at least per_step ({p['per_step']})")
    return p


def bootstrap_indices(n: int, rng: np.random.Generator) -> np.ndarray:
    """n positions drawn with replacement from range(n) (a bootstrap resample), sorted."""
    if n < 1:
        raise ValueError("bootstrap of an empty set")
    return np.sort(rng.integers(0, n, size=n))


def ensemble_uncertainty(prob_stack: torch.Tensor) -> torch.Tensor:
    """Per-sample uncertainty from member probabilities ``prob_stack`` of shape (K, N, C, H, W).

    Variance over K (divisor K) per class and pixel, then the mean over classes and pixels: (N,).
    """
    if prob_stack.ndim < 3:
        raise ValueError(f"prob_stack must be (K, N, C, ...), got shape {tuple(prob_stack.shape)}")
    return prob_stack.var(dim=0, unbiased=False).flatten(1).mean(1)


@contextmanager
def _captured(module: torch.nn.Module):
    """Collects the output of ``module`` in every forward pass inside the block."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


@torch.inference_mode()
def member_outputs(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of a BasicUNet over ``images`` (B, C, H, W): its softmax output (B, n_classes, H, W) and
    its bottleneck feature, the channel-wise spatial mean of ``down_4`` (B, F)."""
    model.eval()
    with _captured(getattr(model, BOTTLENECK)) as out:
        probabilities = model(images).softmax(1)
    return probabilities, out[0].flatten(2).mean(2)


@torch.inference_mode()
def ensemble_scores(ensemble: EnsembleMean, store, sample_ids, device, batch_size: int = 64):
    """Uncertainty (N,) and member-averaged bottleneck feature (N, F) of the given samples, in order."""
    uncertainty, features = [], []
    for start in range(0, len(sample_ids), batch_size):
        ids = np.asarray(sample_ids[start:start + batch_size])
        images = torch.as_tensor(store.read_images(ids), device=device)
        probs, feats = zip(*(member_outputs(member, images) for member in ensemble.members))
        uncertainty.append(ensemble_uncertainty(torch.stack(probs)).cpu())
        features.append(torch.stack(feats).mean(0).cpu())
    return torch.cat(uncertainty).numpy(), torch.cat(features).numpy()


def choose(uncertainty: np.ndarray, features: np.ndarray, ids: np.ndarray, k: int, candidates: int,
           per_step: int) -> list[int]:
    """Positions (into ``ids``) of k samples: most uncertain candidates, thinned by max-cover."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    by_uncertainty = np.lexsort((ids, -uncertainty))  # most uncertain first, ties by sample id
    free = np.ones(len(ids), bool)
    chosen: list[int] = []
    while len(chosen) < k:
        c = min(per_step, k - len(chosen))
        n_candidates = min(int(free.sum()), math.ceil(c * candidates / per_step))
        pool = by_uncertainty[free[by_uncertainty]][:n_candidates]
        similarity = unit[pool] @ unit.T  # candidates x every unannotated sample (cosine)
        for j in greedy_max_cover(similarity, c):
            chosen.append(int(pool[j]))
            free[pool[j]] = False
    return chosen


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    check_request(k, ctx)
    p = method_params(ctx.params)
    ids = np.asarray(ctx.unannotated)
    if k == 0:
        return []
    if not isinstance(ctx.model, EnsembleMean):
        raise TypeError(f"dal needs its ensemble model (kind 'ensemble'), got {type(ctx.model).__name__}")
    uncertainty, features = ensemble_scores(ctx.model, ctx.store, ids, ctx.device)
    return [int(ids[i]) for i in choose(uncertainty, features, ids, k, p["candidates"], p["per_step"])]


def train_round(store, sample_ids, previous_model, spec: dict, cfg: TrainConfig, *, device,
                log_csv: str | Path, checkpoint_dir: str | Path, run_id: str,
                params: dict | None = None) -> tuple[EnsembleMean, dict]:
    """Train the K members on bootstrap resamples of ``sample_ids``; returns (ensemble, its spec).

    Same signature as ``training.train_unet_round``. ``spec``: the base U-Net spec of a member
    (used at round 0); later rounds fine-tune member i of ``previous_model``. Member i's initial
    weights (member 0: ``cfg.seed`` itself, the seed's initial weights shared with every
    method's round 0), resample and data order come from seeds derived from ``cfg.seed`` and i. Resumable:
    one ``checkpoint_member{i}.pt`` per member in ``checkpoint_dir`` (the caller removes them
    after saving).
    """
    p = method_params(params)
    checkpoint_dir = Path(checkpoint_dir)
    sample_ids = np.asarray(sample_ids)
    if previous_model is None:
        # member 0 starts from the seed's initial weights (those of every method's round 0)
        members = [build_seeded(spec, cfg.seed if i == 0 else stream_seed(cfg.seed, "init", i))
                   for i in range(p["n_models"])]
        member_specs = [spec] * p["n_models"]
    else:
        previous, payload = load_model(previous_model, device)
        if payload["spec"]["kind"] != "ensemble" or len(previous.members) != p["n_models"]:
            raise ValueError(f"dal: {previous_model} is not an ensemble of {p['n_models']} members")
        members, member_specs = list(previous.members), payload["spec"]["members"]
    rows = []
    for i, member in enumerate(members):
        rng = np.random.default_rng(stream_seed(cfg.seed, "bootstrap", i))
        resample = sample_ids[bootstrap_indices(len(sample_ids), rng)]
        member_log = checkpoint_dir / f"train_log_member{i}.csv"
        history = train_segmentation(member, store, resample, replace(cfg, seed=stream_seed(cfg.seed, "member", i)),
                                     device=device, log_csv=member_log,
                                     checkpoint=checkpoint_dir / f"checkpoint_member{i}.pt", run_id=f"{run_id}:member{i}")
        member_log.unlink()
        rows += [{**row, "member": i} for row in history]
    with open(log_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*LOG_COLUMNS, "member"])
        writer.writeheader()
        writer.writerows(rows)
    return EnsembleMean(members).to(device), ensemble_spec(member_specs)
