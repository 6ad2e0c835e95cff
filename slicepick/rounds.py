"""The round loop, one function per workflow step (initial selection, train and evaluate, suggest).

Each step reads and writes files only, so Snakemake can track every arrow. Selection files
(``selection.csv``: sample_id, case, z, round_added) hold the annotated set used to train round k.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from slicepick.data.prepare import SliceStore
from slicepick.models import load_model, pick_device, save_model, unet_spec
from slicepick.seeding import rng_for, stream_seed
from slicepick.strategies import get_strategy, module_name
from slicepick.strategies.base import SuggestionContext, random_start
from slicepick.checksums import resume_fingerprint
from slicepick.training import TrainConfig, train_unet_round
from slicepick.evaluation import evaluate_model

log = logging.getLogger(__name__)


def budget_sizes(schedule, n_pool: int) -> list[int]:
    """Cumulative number of annotated samples per round from cumulative fractions of the pool."""
    return [min(n_pool, max(1, int(round(f * n_pool)))) for f in schedule]


def read_selection(path) -> pd.DataFrame:
    return pd.read_csv(path)


def write_selection(path, store: SliceStore, ids_by_round: pd.DataFrame) -> None:
    """Write atomically: an interrupted job leaves no half-written selection."""
    ids_by_round = ids_by_round.sort_values(["round_added", "sample_id"])
    index = store.index.set_index("sample_id")
    out = pd.DataFrame({
        "sample_id": ids_by_round.sample_id.astype(int).to_numpy(),
        "case": index.loc[ids_by_round.sample_id, "case"].to_numpy(),
        "z": index.loc[ids_by_round.sample_id, "z"].to_numpy(),
        "round_added": ids_by_round.round_added.astype(int).to_numpy(),
    })
    tmp = Path(str(path) + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)


def make_initial_selection(store_dir, out_csv, *, method: str, method_cfg: dict, seed: int, schedule,
                           inputs: dict | None = None) -> None:
    """Round 0: the seeded random start, identical for every method of a seed (pairs comparisons)."""
    store = SliceStore(store_dir)
    pool = store.pool_ids
    n0 = budget_sizes(schedule, len(pool))[0]
    strategy = get_strategy(module_name(method, method_cfg))
    if hasattr(strategy, "initial_selection"):
        ctx = SuggestionContext(store, np.array([], int), pool, np.array([], int), -1, rng_for(seed, "start"),
                                method_cfg, inputs=inputs or {})
        ids = strategy.initial_selection(ctx, n0)
    else:
        ids = random_start(pool, n0, rng_for(seed, "start"))
    write_selection(out_csv, store, pd.DataFrame({"sample_id": ids, "round_added": 0}))
    log.info("%s seed %d: initial selection of %d of %d pool samples", method, seed, len(ids), len(pool))


def train_round(store_dir, selection_csv, out_model, out_log, out_metrics, *, previous_model=None,
                dataset: str, method: str, method_cfg: dict, seed: int, round_index: int, fraction: float,
                unet_features, training: dict, hd_percentile: float = 95.0) -> None:
    """Fine-tune the previous round's model (or a new one at round 0) on the annotated set, then
    evaluate it on the test cases.

    The method's own ``train_round`` (DAL's ensemble, LL's loss head) replaces the shared U-Net
    step when its module defines one; every step has the same signature. Evaluation runs in the
    same job because a separate job would cost a second start-up (torch and MONAI imports) per
    round, more than the evaluation itself on the small default.
    """
    device = training.get("device", "auto")
    store = SliceStore(store_dir)
    dev = pick_device(device)
    selection = read_selection(selection_csv)
    strategy = get_strategy(module_name(method, method_cfg))
    step = getattr(strategy, "train_round", train_unet_round)
    run_seed = stream_seed(seed, method, round_index)
    spec = unet_spec(store.n_channels, store.n_classes, unet_features)
    epochs = int(method_cfg.get("epochs", training["epochs_per_round"]))
    cfg = TrainConfig(epochs=epochs, batch_size=int(training["batch_size"]), lr=float(training["lr"]),
                      augment=training.get("augment", {}), seed=run_seed)
    run_id = resume_fingerprint(store, previous_model, selection=selection.sample_id.tolist(), epochs=epochs,
                                cfg=cfg.__dict__, spec=spec, params=method_cfg)
    out_model = Path(out_model)
    log.info("%s seed %d round %d: training on %d samples for %d epochs on %s", method, seed, round_index,
             len(selection), epochs, dev)
    model, spec = step(store, selection.sample_id.to_numpy(), previous_model, spec, cfg, device=dev,
                       log_csv=out_log, checkpoint_dir=out_model.parent, run_id=run_id, params=method_cfg)
    save_model(out_model, model, spec)
    for checkpoint in out_model.parent.glob("checkpoint*.pt"):
        checkpoint.unlink()
    write_metrics(model, store, dev, out_metrics, dataset=dataset, method=method, seed=seed, round_index=round_index,
                  fraction=fraction, n_annotated=len(selection), hd_percentile=hd_percentile)


def write_metrics(model, store: SliceStore, device, out_csv, *, dataset: str, method: str, seed: int,
                  round_index: int, fraction: float, n_annotated: int, hd_percentile: float = 95.0) -> None:
    """Per test case and region scores of one round, as rows of the tidy metrics table."""
    scores = evaluate_model(model, store, device, hd_percentile)
    scores.insert(0, "n_annotated", n_annotated)
    scores.insert(0, "fraction", fraction)
    scores.insert(0, "round", round_index)
    scores.insert(0, "seed", seed)
    scores.insert(0, "method", method)
    scores.insert(0, "dataset", dataset)
    tmp = Path(str(out_csv) + ".tmp")
    scores.to_csv(tmp, index=False)
    tmp.replace(out_csv)
    summary = scores.groupby("region")[["dice", "hd95"]].mean()
    log.info("%s seed %d round %d (%d annotated): %s", method, seed, round_index, n_annotated,
             "; ".join(f"{r} Dice {v.dice:.3f} HD95 {v.hd95:.1f} mm" for r, v in summary.iterrows()))


def suggest_next(store_dir, model_path, selection_csv, out_csv, *, method: str, method_cfg: dict, seed: int,
                 round_index: int, schedule, inputs: dict | None = None, device: str = "auto") -> None:
    """The method picks the samples that join the annotated set for round ``round_index + 1``."""
    store = SliceStore(store_dir)
    strategy = get_strategy(module_name(method, method_cfg))
    dev = pick_device(device)
    selection = read_selection(selection_csv)
    annotated = selection.sample_id.to_numpy()
    pool = store.pool_ids
    unannotated = np.setdiff1d(pool, annotated)
    last_added = selection.loc[selection.round_added == selection.round_added.max(), "sample_id"].to_numpy()
    k = budget_sizes(schedule, len(pool))[round_index + 1] - len(annotated)
    model = None
    if getattr(strategy, "USES_MODEL", True):
        model, _ = load_model(model_path, dev)
        model.eval()
    ctx = SuggestionContext(store, annotated, unannotated, last_added, round_index,
                            rng_for(seed, method, "suggest", round_index), method_cfg, model, dev, inputs or {})
    new = strategy.suggest(max(k, 0), ctx)
    if len(set(new)) != len(new) or not set(new) <= set(unannotated.tolist()):
        raise RuntimeError(f"strategy {method} returned duplicate or already annotated samples")
    added = pd.DataFrame({"sample_id": new, "round_added": round_index + 1})
    write_selection(out_csv, store, pd.concat([selection[["sample_id", "round_added"]], added]))
    log.info("%s seed %d: suggested %d samples after round %d (%d annotated now)", method, seed, len(new),
             round_index, len(annotated) + len(new))
