"""The round loop: one job per (method, seed, round) selects, trains and evaluates.

Each step reads and writes files only, so Snakemake can track every arrow. Selection files
(``selection.csv``: sample_id, case, z, round_added) hold the annotated set used to train round k.

Pairing: every random stream of training (initial weights, batch order, augmentation) comes from
``training_seed(seed, round)``, never from the method's name. Methods that start from the seeded
random set and train the plain U-Net share one round-0 model per seed (``train_shared_start``),
so at every later round two such methods differ only in the slices they chose.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from slicepick.data.store import SliceStore
from slicepick.files import write_csv
from slicepick.joblog import mark_useful_start
from slicepick.models import load_model, pick_device, save_model, unet_spec
from slicepick.seeding import rng_for, stream_seed
from slicepick.strategies import get_strategy, module_name
from slicepick.strategies.base import SuggestionContext, random_start
from slicepick.checksums import resume_fingerprint
from slicepick.training import TrainConfig, train_unet_round
from slicepick.evaluation import evaluate_model

log = logging.getLogger(__name__)


def training_seed(seed: int, round_index: int) -> int:
    """The seed of a round's training streams: the run's seed and the round, never the method."""
    return stream_seed(seed, "train", round_index)


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
    write_csv(out, path)


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


def train_config(training: dict, method_cfg: dict, seed: int) -> TrainConfig:
    """The round's training settings: ``training`` with the method block's own ``epochs`` (full)."""
    return TrainConfig(epochs=int(method_cfg.get("epochs", training["epochs_per_round"])),
                       batch_size=int(training["batch_size"]), lr=float(training["lr"]),
                       augment=training.get("augment", {}), seed=seed,
                       min_steps=int(training.get("min_steps", 0)),
                       loss=training.get("loss", "dice"),
                       lr_schedule=training.get("lr_schedule", "constant"))


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
    spec = unet_spec(store.n_channels, store.n_classes, unet_features)
    cfg = train_config(training, method_cfg, training_seed(seed, round_index))
    run_id = resume_fingerprint(store, previous_model, selection=selection.sample_id.tolist(), cfg=cfg.__dict__,
                                spec=spec, params=method_cfg)
    out_model = Path(out_model)
    log.info("%s seed %d round %d: training on %d samples (at least %d epochs, %d steps) on %s", method, seed,
             round_index, len(selection), cfg.epochs, cfg.min_steps, dev)
    model, spec = step(store, selection.sample_id.to_numpy(), previous_model, spec, cfg, device=dev,
                       log_csv=out_log, checkpoint_dir=out_model.parent, run_id=run_id, params=method_cfg)
    save_model(out_model, model, spec)
    for checkpoint in out_model.parent.glob("checkpoint*.pt"):
        checkpoint.unlink()
    write_metrics(model, store, dev, out_metrics, dataset=dataset, method=method, seed=seed, round_index=round_index,
                  fraction=fraction, n_annotated=len(selection), hd_percentile=hd_percentile)


SHARED = "shared"  # the method name in the shared start's metrics; each sharing method's copy names itself


def train_shared_start(store_dir, out_dir, *, dataset: str, seed: int, schedule, unet_features, training: dict,
                       hd_percentile: float = 95.0) -> None:
    """Round 0 of every method that starts from the seeded random set with the plain U-Net: one
    selection, one model and one evaluation per seed, read by no method's module."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_initial_selection(store_dir, out_dir / "selection.csv", method=SHARED, method_cfg={"module": "random"},
                           seed=seed, schedule=schedule)
    train_round(store_dir, out_dir / "selection.csv", out_dir / "model.pt", out_dir / "train_log.csv",
                out_dir / "metrics.csv", dataset=dataset, method=SHARED, method_cfg={"module": "random"}, seed=seed,
                round_index=0, fraction=schedule[0], unet_features=unet_features, training=training,
                hd_percentile=hd_percentile)


def run_round(store_dir, out_dir, *, previous_dir=None, dataset: str, method: str, method_cfg: dict, seed: int,
              round_index: int, fraction: float, schedule, unet_features, training: dict,
              inputs: dict | None = None, hd_percentile: float = 95.0) -> None:
    """One round of one method in one job: its selection (the start at round 0, else the method's
    suggestion from the previous round's model), then training and evaluation.

    One job instead of two (suggest, train) halves the torch and MONAI start-up a round pays.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selection = out_dir / "selection.csv"
    if round_index == 0:
        make_initial_selection(store_dir, selection, method=method, method_cfg=method_cfg, seed=seed,
                               schedule=schedule, inputs=inputs)
        previous_model = None
    else:
        previous_model = Path(previous_dir) / "model.pt"
        suggest_next(store_dir, previous_model, Path(previous_dir) / "selection.csv", selection, method=method,
                     method_cfg=method_cfg, seed=seed, round_index=round_index - 1, schedule=schedule,
                     inputs=inputs, device=training.get("device", "auto"))
    train_round(store_dir, selection, out_dir / "model.pt", out_dir / "train_log.csv", out_dir / "metrics.csv",
                previous_model=previous_model, dataset=dataset, method=method, method_cfg=method_cfg, seed=seed,
                round_index=round_index, fraction=fraction, unet_features=unet_features, training=training,
                hd_percentile=hd_percentile)


def run_chain(store_dir, method_dir, *, rounds: int, shared_start_dir=None, **round_args) -> None:
    """Every round of one method and seed in one job (``chain_rounds: true``): torch, MONAI and the
    optimiser's compiler stack are imported once instead of once per round. Round 0 is a copy of
    ``shared_start_dir`` for methods that share the start. ``round_args``: those of ``run_round``
    (``fraction`` is taken from ``schedule``)."""
    from slicepick.pairing import ROUND_FILES, copy_shared_start

    method_dir = Path(method_dir)
    for k in range(rounds):
        out_dir = method_dir / f"round{k}"
        out_dir.mkdir(parents=True, exist_ok=True)
        if k == 0 and shared_start_dir is not None:
            copy_shared_start({key: Path(shared_start_dir) / name for key, name in ROUND_FILES.items()},
                              {key: out_dir / name for key, name in ROUND_FILES.items()}, round_args["method"])
            continue
        run_round(store_dir, out_dir, previous_dir=method_dir / f"round{k - 1}" if k else None, round_index=k,
                  fraction=round_args["schedule"][k], **round_args)


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
    write_csv(scores, out_csv)
    if scores.degenerate.any():
        log.warning("%s seed %d round %d: DEGENERATE model (foreground on %.1f%% of the test set's background "
                    "pixels; %d foreground pixels in all): it has not learned", method, seed, round_index,
                    100 * scores.foreground_on_background.iloc[0], scores.predicted_foreground.iloc[0])
    scores = scores.drop(columns=["foreground_on_background", "predicted_foreground"])
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
    mark_useful_start(log)
    log.info("%s suggests %d samples from %d candidates", method, max(k, 0), len(unannotated))
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
