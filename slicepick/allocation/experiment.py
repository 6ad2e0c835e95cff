"""The two jobs of the study: plan every cell's selections, then train and evaluate one
(B, s, seed, model) over every selection x interpolation.

Pairing: the volumes of a cell come from (seed, B, s); a model's initial weights and data-order
seed from (seed, B, s, model) only, never from the selection or interpolation name. So within a
job every run starts from the same weights and differs only in its training slices.
"""
from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from slicepick.allocation.grid import (METRIC_COLUMNS, SELECTION_COLUMNS, cells, data_errors, methods,
                                       model_interpolations, slices_per_volume)
from slicepick.allocation.interpolation import (fill_between, itk_spacing, morphological_many, region_sets,
                                                require_itk)
from slicepick.allocation.selection import choose_volumes, select
from slicepick.allocation.volume3d import build_unet3d, predict_volume, stack_case, train_volumes
from slicepick.data.prepare import SliceStore
from slicepick.evaluation import ForegroundTally, dice_hd95, evaluate_model, region_masks
from slicepick.files import write_csv
from slicepick.models import build_seeded, pick_device, unet_spec
from slicepick.seeding import stream_seed
from slicepick.training import TrainConfig, fingerprint, train_segmentation

log = logging.getLogger(__name__)


class AllocationError(ValueError):
    pass


def plan_selections(store_dir, out_csv, *, alloc_cfg: dict, seeds) -> pd.DataFrame:
    """Check every cell against the data, then write the slices of every (cell, seed, method).

    Raises :class:`AllocationError` naming every cell the prepared data cannot hold.
    """
    if "morphological" in alloc_cfg.get("interpolations", ()):
        require_itk()
    store = SliceStore(store_dir)
    train = store.case_ids("train")
    n_slices = {c: len(store.case_samples(c)) for c in train}
    problems = data_errors(alloc_cfg, n_slices)
    if problems:
        raise AllocationError("\n".join(problems))
    rows = []
    for budget, s in cells(alloc_cfg):
        for seed in seeds:
            volumes = choose_volumes(train, s, seed, budget)
            for selection, allocation in methods(alloc_cfg):
                picked = select(selection, allocation, {c: n_slices[c] for c in volumes}, budget, seed,
                                features=lambda c: np.array(store.images[store.case_samples(c)]),
                                ual_grid=int(alloc_cfg.get("ual_grid", 8)))
                total = sum(len(p) for p in picked.values())
                if total != budget:
                    raise AllocationError(f"allocation cell B={budget}, s={s}, seed {seed}: {selection}/{allocation} "
                                          f"picked {total} slices, not {budget}")
                for case in volumes:
                    ids = store.case_samples(case)
                    zs = store.index.set_index("sample_id").loc[ids, "z"].to_numpy()
                    for pos in picked[case]:
                        rows.append((budget, s, seed, selection, allocation, case, int(ids[pos]), int(zs[pos]), int(pos)))
            log.info("cell B=%d s=%d seed %d: volumes %s, slices per volume %s", budget, s, seed, volumes,
                     slices_per_volume(budget, s))
    out = pd.DataFrame(rows, columns=SELECTION_COLUMNS)
    write_csv(out, out_csv)
    return out


class ArraySlices:
    """The annotated (and interpolated) slices as arrays, read by the shared 2D training loop."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels


def train_config(training: dict, seed: int) -> TrainConfig:
    """TrainConfig from a ``training_2d`` block (its ``min_steps`` floor is applied by the training
    loop, ``training.epochs_for``); keys TrainConfig does not have (3D-only ones) are left out."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in {**training, "seed": seed}.items() if k in names})


def _annotated(chosen: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    return [(case, rows.position.to_numpy()) for case, rows in chosen.groupby("case", sort=True)]


def morphological_fills(store, selections: dict) -> dict:
    """ITK's fills for every selection of a job, ``{key: {case: (Z, H, W) labels}}``, in one child process.

    The child pays ITK's import (seconds) once per job instead of once per selection.
    """
    keys, items = [], []
    for key, chosen in selections.items():
        for case, positions in _annotated(chosen):
            keys.append((key, case))
            items.append((np.moveaxis(stack_case(store, case)[1], -1, 0), positions,
                          itk_spacing(store.meta["cases"][case]["spacing_mm"])))
    fills: dict = {}
    for (key, case), filled in zip(keys, morphological_many(items)):
        fills.setdefault(key, {})[case] = filled
    return fills


def training_volumes(store, chosen: pd.DataFrame, interpolation: str, sets, n_classes: int, morph: dict | None = None):
    """Per training volume: its image (C, H, W, Z), training labels (H, W, Z) and labelled slices (Z,).

    ``morph``: this selection's ITK fills per case (``morphological_fills``), computed here when absent.
    """
    cases = _annotated(chosen)
    if interpolation == "morphological" and morph is None:
        morph = morphological_fills(store, {None: chosen})[None]
    morph = morph or {}
    out = []
    for case, positions in cases:
        image, label = stack_case(store, case)
        spacing = store.meta["cases"][case]["spacing_mm"]
        filled, labelled = fill_between(np.moveaxis(label, -1, 0), positions, interpolation, sets=sets,
                                        n_classes=n_classes, spacing_mm=spacing, morphological_result=morph.get(case))
        out.append({"case": case, "image": image, "label": np.moveaxis(filled, 0, -1), "labelled": labelled})
    return out


def evaluate_3d(model, store, device, cfg3d: dict, percentile: float) -> pd.DataFrame:
    """Per test case and region: Dice and HD of the 3D model's prediction (whole volume or sliding window),
    with the model's ``degenerate`` flag (``evaluation.is_degenerate``), as the 2D evaluation has."""
    meta, rows, tally = store.meta, [], ForegroundTally()
    for case in store.case_ids("test"):
        image, ref = stack_case(store, case)
        pred = predict_volume(model, image, device, cfg3d.get("patch_size"), int(cfg3d.get("sw_batch_size", 1)),
                              float(cfg3d.get("overlap", 0.25)))
        tally.add(pred, ref)
        pr, rr = (region_masks(x, meta["regions"], meta["label_values"]) for x in (pred, ref))
        for region in meta["regions"]:
            dice, hd = dice_hd95(pr[region], rr[region], meta["cases"][case]["spacing_mm"], percentile)
            rows.append({"case": case, "region": region, "dice": dice, "hd95": hd})
    scores = pd.DataFrame(rows)
    scores["degenerate"] = tally.degenerate
    return scores


def run_cell(store_dir, selections_csv, out_metrics, out_log, *, dataset: str, budget: int, n_volumes: int,
             seed: int, model_kind: str, alloc_cfg: dict, unet_features, augment: dict, device: str = "auto",
             hd_percentile: float = 95.0, work_dir=None) -> pd.DataFrame:
    """Train and evaluate ``model_kind`` (2d | 3d) on its methods x interpolations (``grid.methods``,
    ``grid.model_interpolations``) of one cell and seed.

    Finished runs are kept in ``work_dir`` (one CSV each, tagged with the run's fingerprint), so a
    job killed half-way resumes at the next run.
    """
    store = SliceStore(store_dir)
    dev = pick_device(device)
    plan = pd.read_csv(selections_csv)
    plan = plan[(plan.budget == budget) & (plan.n_volumes == n_volumes) & (plan.seed == seed)]
    if plan.empty:
        raise AllocationError(f"{selections_csv}: no selections for B={budget}, s={n_volumes}, seed {seed}")
    sets = region_sets(store.meta["regions"], store.meta["label_values"])
    init_seed = stream_seed(seed, "allocation-init", budget, n_volumes, model_kind)
    train_seed = stream_seed(seed, "allocation-train", budget, n_volumes, model_kind)
    work = Path(work_dir or Path(out_metrics).parent / "work")
    work.mkdir(parents=True, exist_ok=True)
    cfg = dict(alloc_cfg[f"training_{model_kind}"])
    frames, logs = [], []
    fills = None  # ITK's fills of every selection, made on first use
    for selection, allocation in methods(alloc_cfg, model_kind):
        chosen = plan[(plan.selection == selection) & (plan.allocation == allocation)]
        for interpolation in model_interpolations(alloc_cfg, model_kind):
            tag = f"{selection}-{allocation}-{interpolation}"
            run_id = fingerprint(ids=chosen.sample_id.tolist(), interpolation=interpolation, cfg=cfg, model=model_kind,
                                 features=list(unet_features), init=init_seed, augment=augment)
            part, part_log = work / f"{tag}.csv", work / f"{tag}.train_log.csv"
            if part.exists() and part_log.exists() and (done := pd.read_csv(part)).run_id.eq(run_id).all():
                log.info("%s: reusing the finished run in %s", tag, part)
                scores, history = done.drop(columns="run_id"), pd.read_csv(part_log)
            else:
                morph = None
                if interpolation == "morphological":
                    if fills is None:
                        fills = morphological_fills(store, {m: plan[(plan.selection == m[0]) & (plan.allocation == m[1])]
                                                            for m in methods(alloc_cfg, model_kind)})
                    morph = fills[(selection, allocation)]
                volumes = training_volumes(store, chosen, interpolation, sets, store.n_classes, morph)
                n_labelled = sum(int(v["labelled"].sum()) for v in volumes)
                log.info("B=%d s=%d seed %d %s %s: %d annotated slices, %d labelled for training", budget, n_volumes,
                         seed, model_kind, tag, len(chosen), n_labelled)
                if model_kind == "2d":
                    images = np.concatenate([np.moveaxis(v["image"], -1, 0)[v["labelled"]] for v in volumes])
                    labels = np.concatenate([np.moveaxis(v["label"], -1, 0)[v["labelled"]] for v in volumes])
                    model = build_seeded(unet_spec(store.n_channels, store.n_classes, unet_features), init_seed)
                    tc = train_config({**cfg, "augment": augment}, train_seed)
                    checkpoint = work / f"{tag}.checkpoint.pt"
                    history = pd.DataFrame(train_segmentation(
                        model, ArraySlices(images, labels), np.arange(len(images)), tc, device=dev,
                        log_csv=work / f"{tag}.epochs.csv", checkpoint=checkpoint, run_id=run_id))
                    checkpoint.unlink(missing_ok=True)
                    scores = evaluate_model(model, store, dev, hd_percentile)
                elif model_kind == "3d":
                    model = build_unet3d(store.n_channels, store.n_classes, cfg["features"], init_seed)
                    history = pd.DataFrame(train_volumes(model, volumes, {**cfg, "augment": augment}, seed=train_seed,
                                                         device=dev))
                    scores = evaluate_3d(model, store, dev, cfg, hd_percentile)
                else:
                    raise AllocationError(f"allocation: unknown model '{model_kind}' (2d | 3d)")
                write_csv(history, part_log)
                write_csv(scores.assign(run_id=run_id), part)
            meta = {"dataset": dataset, "model": model_kind, "budget": budget, "n_volumes": n_volumes,
                    "slices_per_volume": round(budget / n_volumes, 4), "selection": selection,
                    "allocation": allocation, "interpolation": interpolation, "seed": seed}
            frames.append(scores.assign(**meta)[METRIC_COLUMNS])
            logs.append(history.assign(selection=selection, allocation=allocation, interpolation=interpolation))
            summary = scores.groupby("region").dice.mean()
            if scores.degenerate.any():
                log.warning("B=%d s=%d seed %d %s %s: degenerate model (foreground on more than half of the test "
                            "background, or none): it has not learned", budget, n_volumes, seed, model_kind, tag)
            log.info("B=%d s=%d seed %d %s %s: %s", budget, n_volumes, seed, model_kind, tag,
                     "; ".join(f"{r} Dice {d:.3f}" for r, d in summary.items()))
    metrics = pd.concat(frames, ignore_index=True)
    write_csv(pd.concat(logs, ignore_index=True), out_log)
    write_csv(metrics, out_metrics)
    for part in work.glob("*"):
        part.unlink()
    work.rmdir()
    return metrics
