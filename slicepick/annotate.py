"""Annotate mode: real annotation rounds on a team's own unlabelled volumes, and budget plans.

The working store holds the images' slices in the files' own voxel order along ``annotate.axis``
(no reorientation), so a store sample's ``(case, z)`` is the slice index an annotator finds in the
file (0-based; viewers count from 1). Labels come from the annotations folder at every round,
for the annotated slices only (:class:`AnnotationLabels`): training never sees an ignored voxel.

A round (``run_round``) reads and checks every annotation file, trains the segmentation model on
the annotated slices (fine-tuning the previous round's), lets the method pick the next slices and
writes the round folder: ``plan.csv`` (case, axis, slice, rank, method, score),
``to_annotate/<case>.nii.gz`` and ``contact_sheet.png``. Without any annotated slice the round is
the non-interactive start (fixed interval over the volumes, or the method's own start). ``plan``
(``run_plan``) writes the same files for a fixed budget without interaction.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from nibabel.orientations import io_orientation  # noqa: E402

from slicepick.annotation_state import (HASH_FILE, AnnotationError, annotate_cases, annotated_slices,  # noqa: E402
                                        annotation_files, annotations_hash, image_geometry, read_annotation,
                                        round_folders)
from slicepick.data.labels import LabelSpec  # noqa: E402
from slicepick.data.prepare import (PAD_MULTIPLE, SliceStore, _case_slices, _pad_offsets, _round_up,  # noqa: E402
                                    atomic_folder, nonblank_range)
from slicepick.data.readers import DatasetError, open_volume, resolve_dataset  # noqa: E402
from slicepick.data.validate import check_case  # noqa: E402
from slicepick.models import pick_device, save_model, unet_spec  # noqa: E402
from slicepick.seeding import rng_for, stream_seed  # noqa: E402
from slicepick.strategies import get_strategy, module_name  # noqa: E402
from slicepick.strategies.base import SuggestionContext  # noqa: E402
from slicepick.rounds import train_config  # noqa: E402
from slicepick.training import fingerprint, train_unet_round  # noqa: E402

log = logging.getLogger(__name__)

PLAN_COLUMNS = ["case", "axis", "slice", "rank", "method", "score"]
CARRIED = "carried"  # plan.csv method of a slice suggested before and still unannotated


# ------------------------------------------------------------------------------------------ store

def label_spec(ds: dict) -> LabelSpec:
    if ds.get("label_groups"):
        return LabelSpec.from_groups(ds["label_groups"])
    return LabelSpec.from_values(ds["label_values"], ds.get("regions") or {})


def _read_image(case) -> np.ndarray:
    """(C, X, Y, Z) float32 in the files' own voxel order (no reorientation)."""
    volumes = []
    for path in case.images:
        img = open_volume(path)
        shape = tuple(int(s) for s in img.shape[:3])
        volumes.append(np.asarray(img.dataobj, np.float32).reshape(shape))
    return np.stack(volumes)


def prepare_annotate_store(data_root, dataset_cfg: dict, axis: int, out_dir) -> None:
    """Check every image, then write a slice store (prepare.py's format) of slices along ``axis``.

    Every case is in the pool (subset ``train``); ``z`` in index.csv is the slice index along
    ``axis`` in the file. ``labels.u8`` is a sparse all-zero file: labels come from the annotations
    at each round. Written atomically (temp folder, then rename).
    """
    layout = "brats" if dataset_cfg["layout"] == "synthetic" else dataset_cfg["layout"]
    ds = resolve_dataset(layout, data_root, dataset_cfg)
    labels = label_spec(ds)
    cases = annotate_cases(data_root, dataset_cfg)
    problems = [str(p) for case in cases for p in check_case(case, ds["modalities"], labels.raw_values)]
    ids = [c.case_id for c in cases]
    problems += [f"case {c}: duplicate case id" for c in sorted(set(ids)) if ids.count(c) > 1]
    if problems:
        raise DatasetError("\n".join(problems + [f"{len(problems)} problem(s) in data_root; nothing was written"]))
    geometry = image_geometry(cases)
    in_plane = [a for a in range(3) if a != axis]
    padded_hw = [_round_up(max(g[0][a] for g in geometry.values()), PAD_MULTIPLE) for a in in_plane]
    rows, case_meta, n = [], {}, 0
    with atomic_folder(out_dir) as tmp:
        with open(tmp / "images.f32", "wb") as f_img:
            for i, case in enumerate(cases):
                image = np.moveaxis(_read_image(case), axis + 1, -1)  # (C, A, B, S): S along `axis`
                z0, z1 = nonblank_range(image)
                pads = _pad_offsets(image.shape[1:3], padded_hw)
                slices = _case_slices(image, z0, z1, pads, padded_hw)
                f_img.write(memoryview(np.ascontiguousarray(slices, np.float32)).cast("B"))
                shape, affine, _ = geometry[case.case_id]
                case_meta[case.case_id] = {"subset": "train", "image_files": [str(p) for p in case.images],
                                           "shape": list(shape), "affine": affine.tolist(), "z_range": [z0, z1],
                                           "pad": [list(p) for p in pads], "padded_hw": padded_hw}
                rows += [(n + j, case.case_id, z, "train") for j, z in enumerate(range(z0, z1))]
                n += z1 - z0
                log.info("annotate store: %s (%d/%d): %d non-blank slices along axis %d", case.case_id, i + 1,
                         len(cases), z1 - z0, axis)
                del image, slices
        with open(tmp / "labels.u8", "wb") as f_lab:
            f_lab.truncate(n * padded_hw[0] * padded_hw[1])  # sparse zeros: no disk used
        pd.DataFrame(rows, columns=["sample_id", "case", "z", "subset"]).to_csv(tmp / "index.csv", index=False)
        pd.DataFrame({"case": sorted(case_meta), "subset": "train"}).to_csv(tmp / "split.csv", index=False)
        meta = {"mode": "annotate", "axis": int(axis), "images_shape": [n, len(ds["modalities"]), *padded_hw],
                "modalities": list(ds["modalities"]), **labels.meta(), "cases": case_meta}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info("annotate store: %d cases, %d slices into %s", len(cases), n, out_dir)


class AnnotationLabels:
    """The store's labels for the annotated samples only; asking for any other sample is an error,
    so nothing trains on (or takes gradients from) a slice that is not annotated."""

    def __init__(self, shape, slices: dict[int, np.ndarray]):
        self.shape, self._slices = tuple(shape), slices

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if np.ndim(key) == 0:
            sid = int(key)
            if sid not in self._slices:
                raise KeyError(f"sample {sid} is not annotated: it has no label to train on")
            return self._slices[sid]
        ids = np.asarray(key)
        return np.stack([self[i] for i in ids.ravel()]).reshape(ids.shape + self.shape[1:])


def _pad_slice(plane: np.ndarray, case_meta: dict) -> np.ndarray:
    (px, _), (py, _) = case_meta["pad"]
    out = np.zeros(case_meta["padded_hw"], np.uint8)
    out[px:px + plane.shape[0], py:py + plane.shape[1]] = plane
    return out


def _crop(plane: np.ndarray, case_meta: dict) -> np.ndarray:
    (px0, px1), (py0, py1) = case_meta["pad"]
    h, w = plane.shape
    return plane[px0:h - px1, py0:w - py1]


# ------------------------------------------------------------------------------ fixed interval

def _nearest_free(free: np.ndarray, taken: set, target: float) -> int:
    options = [int(f) for f in free if int(f) not in taken]
    return min(options, key=lambda f: (abs(f - target), f))


def _shares(budget: int, capacities: list[int]) -> list[int]:
    """Split ``budget`` as evenly as the capacities allow (first volumes take the remainder)."""
    shares = [0] * len(capacities)
    left = budget
    while left > 0:
        open_ = [i for i, c in enumerate(capacities) if shares[i] < c]
        if not open_:
            break
        each, extra = divmod(left, len(open_))
        for j, i in enumerate(open_):
            add = min(each + (j < extra), capacities[i] - shares[i])
            shares[i] += add
            left -= add
    return shares


def fixed_interval(free_slices: dict[str, np.ndarray], budget: int, *, rng: np.random.Generator,
                   n_volumes: int | None = None, slices_per_volume: int = 3,
                   selection: str = "fixed_interval") -> list[tuple[str, int]]:
    """Exactly ``budget`` (case, slice) pairs: ``n_volumes`` volumes drawn by ``rng`` (default: as many
    as the budget allows at ``slices_per_volume`` each, the allocation study's finding that many
    volumes with a few slices beat few volumes with many), slices equally spaced over each
    volume's non-blank extent with a seeded offset (``random``: drawn uniformly instead).

    ``free_slices``: per case, the slice indices that may be chosen (non-blank, not annotated).
    More volumes are added when the chosen ones cannot hold the budget.
    """
    cases = sorted(c for c, free in free_slices.items() if len(free))
    total = sum(len(free_slices[c]) for c in cases)
    if budget > total:
        raise ValueError(f"a budget of {budget} slices exceeds the {total} non-blank unannotated slices of the volumes")
    if budget <= 0:
        return []
    wanted = n_volumes if n_volumes is not None else max(1, budget // slices_per_volume)
    order = [cases[i] for i in rng.permutation(len(cases))]
    chosen = order[:min(wanted, len(order))]
    shares = _shares(budget, [len(free_slices[c]) for c in chosen])
    while sum(shares) < budget:  # the chosen volumes are too short: add the next one
        chosen = order[:len(chosen) + 1]
        shares = _shares(budget, [len(free_slices[c]) for c in chosen])
    if len(chosen) > wanted:
        log.warning("plan: %d volumes cannot hold %d slices; using %d volumes", wanted, budget, len(chosen))
    picks = []
    for case in sorted(chosen):
        n = shares[chosen.index(case)]
        free = np.sort(np.asarray(free_slices[case]))
        if selection == "random":
            slices = sorted(int(s) for s in rng.choice(free, size=n, replace=False))
        elif selection == "fixed_interval":
            start, stop = int(free[0]), int(free[-1]) + 1
            step = (stop - start) / n
            offset = rng.uniform(0, step)
            taken: set[int] = set()
            for i in range(n):
                taken.add(_nearest_free(free, taken, start + offset + i * step))
            slices = sorted(taken)
        else:
            raise ValueError(f"plan.selection '{selection}' is not one of fixed_interval, random")
        picks += [(case, s) for s in slices]
    return picks


# ------------------------------------------------------------------------------------ outputs

def display_view(plane: np.ndarray, affine, axis: int) -> np.ndarray:
    """A slice (the two in-plane axes in file order) turned as viewers show it (row 0 at the top):
    patient left on the right (radiological), anterior or superior at the top."""
    ornt = io_orientation(np.asarray(affine))
    a, b = [ax for ax in range(3) if ax != axis]
    horizontal_first = ornt[a, 0] < ornt[b, 0]  # world x before y before z goes across
    view = plane.T if horizontal_first else plane  # rows: the vertical axis
    h_axis, v_axis = (a, b) if horizontal_first else (b, a)
    if ornt[h_axis, 1] > 0:  # index grows toward +world (R or A): screen right must be L or P
        view = view[:, ::-1]
    if ornt[v_axis, 1] > 0:  # index grows toward A or S: that end goes to the top
        view = view[::-1, :]
    return view


def contact_sheet(store: SliceStore, plan: pd.DataFrame, sample_of: dict, out_png, *, title: str,
                  model=None, device="cpu", label_names=None) -> None:
    """The planned slices, ranked, each with the current model's prediction outlined (none: images only)."""
    n = len(plan)
    cols = max(1, min(5, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows + 0.6), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10")
    grey = plt.get_cmap("gray").with_extremes(bad="black")
    predictions = {}
    if model is not None and n:
        ids = np.array([sample_of[(r.case, r.slice)] for r in plan.itertuples()])
        with torch.no_grad():
            for i in range(0, len(ids), 32):
                batch = torch.as_tensor(np.array(store.images[ids[i:i + 32]]), device=device)
                for sid, pred in zip(ids[i:i + 32], model(batch).argmax(1).cpu().numpy()):
                    predictions[int(sid)] = pred
    n_classes = len(store.meta["label_values"])
    for ax, row in zip(axes.ravel(), plan.itertuples()):
        sid = sample_of[(row.case, row.slice)]
        meta = store.meta["cases"][row.case]
        affine, axis = meta["affine"], store.meta["axis"]
        image = display_view(_crop(np.array(store.images[sid][0]), meta), affine, axis)
        inside = image[image != 0]  # z-scored inside the body, 0 outside: shown black
        vmin, vmax = np.percentile(inside, [1, 99]) if inside.size else (-1.0, 1.0)
        ax.imshow(np.ma.masked_equal(image, 0), cmap=grey, vmin=vmin, vmax=vmax, interpolation="nearest")
        if sid in predictions:  # inside the body only: outside it is padding and background
            pred = np.where(image != 0, display_view(_crop(predictions[sid], meta), affine, axis), 0)
            for c in range(1, n_classes):
                if (pred == c).any():
                    ax.contour(pred == c, levels=[0.5], colors=[colours((c - 1) % 10)], linewidths=1.0)
        score = "" if pd.isna(row.score) else f"  score {row.score:.3f}"
        ax.set_title(f"#{row.rank} {row.case}\nslice {row.slice} (viewer {row.slice + 1}){score}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if predictions and label_names:
        handles = [plt.Line2D([], [], color=colours((c - 1) % 10)) for c in range(1, n_classes)]
        fig.legend(handles, label_names[1:], loc="outside lower center", ncol=min(6, n_classes - 1), fontsize=8,
                   title="current model's prediction (label value)", title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _label_dtype(values) -> np.dtype:
    top = max(int(v) for v in values)
    return np.dtype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32)


def save_label_map(data: np.ndarray, image_file, out_path, dtype) -> None:
    """A label map on the image's grid: the image's header (affine, qform/sform codes, units), integer dtype."""
    src = open_volume(image_file)
    header = src.header.copy()
    header.set_data_dtype(dtype)
    out = type(src)(np.asarray(data, dtype=dtype), src.affine, header)
    out.header.set_slope_inter(1, 0)
    nib.save(out, str(out_path))


def write_to_annotate(folder: Path, plan: pd.DataFrame, store: SliceStore, annotations: dict[str, Path],
                      raw_values, ignore_value: int) -> None:
    """Per planned case: its current annotation (none: all ``ignore_value``) with the planned slices'
    ignored voxels set to 0, ready to paint; voxels already painted in those slices are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    axis = store.meta["axis"]
    dtype = _label_dtype([*raw_values, ignore_value])
    for case, rows in plan.groupby("case"):
        meta = store.meta["cases"][case]
        shape, affine = tuple(meta["shape"]), np.asarray(meta["affine"])
        if case in annotations:
            label = read_annotation(annotations[case], shape, affine, raw_values, ignore_value)
        else:
            label = np.full(shape, ignore_value, np.int64)
        for s in rows.slice:
            index = [slice(None)] * 3
            index[axis] = int(s)
            plane = label[tuple(index)]
            plane[plane == ignore_value] = 0
        save_label_map(label, meta["image_files"][0], folder / f"{case}.nii.gz", dtype)


def write_plan_folder(out_dir, plan: pd.DataFrame, store: SliceStore, *, annotations: dict[str, Path], raw_values,
                      ignore_value: int, title: str, model=None, device="cpu", extra_files: dict | None = None,
                      keep: tuple[str, ...] = ()) -> None:
    """plan.csv, to_annotate/ and contact_sheet.png (plus ``extra_files`` name -> text) into ``out_dir``,
    written in a temp folder renamed at the end; ``keep`` names files already in the temp folder."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for path in tmp.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    plan = plan[PLAN_COLUMNS]
    plan.to_csv(tmp / "plan.csv", index=False)
    write_to_annotate(tmp / "to_annotate", plan, store, annotations, raw_values, ignore_value)
    sample_of = {(c, int(z)): int(s) for s, c, z in zip(store.index.sample_id, store.index.case, store.index.z)}
    names = list(store.meta.get("label_groups") or {}) or [str(v) for v in store.meta["label_values"]]
    contact_sheet(store, plan, sample_of, tmp / "contact_sheet.png", title=title, model=model, device=device,
                  label_names=names)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


# -------------------------------------------------------------------------------------- rounds

@torch.no_grad()
def prediction_entropy(model, store, sample_ids, device) -> np.ndarray:
    """Mean per-pixel entropy of the model's softmax inside the image (non-zero pixels), per sample:
    how unsure the current model is on a slice (plan.csv's score)."""
    model.eval()
    out = []
    for i in range(0, len(sample_ids), 32):
        images = torch.as_tensor(np.array(store.images[np.asarray(sample_ids[i:i + 32])]), device=device)
        p = model(images).softmax(1).clamp_min(1e-12)
        entropy = -(p * p.log()).sum(1)
        inside = (images != 0).any(1).float()
        out.append(((entropy * inside).sum((1, 2)) / inside.sum((1, 2)).clamp_min(1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _previous_round(suggestions_dir, round_index: int) -> Path | None:
    earlier = [p for p in round_folders(suggestions_dir) if int(p.name[5:]) < round_index]
    return earlier[-1] if earlier else None


def _previous_model(suggestions_dir, round_index: int) -> Path | None:
    for folder in reversed([p for p in round_folders(suggestions_dir) if int(p.name[5:]) < round_index]):
        if (folder / "model.pt").is_file():
            return folder / "model.pt"
    return None


def read_annotations(store: SliceStore, files: dict[str, Path], ignore_value: int):
    """Check every annotation file and collect its annotated slices.

    Returns ``annotated`` (set of (case, slice), every annotated slice), ``labels`` (sample id ->
    padded class map, for the annotated slices in the store) and ``background`` (annotated slices
    holding only the background).
    """
    meta = store.meta
    axis, raw_values = meta["axis"], meta["raw_label_values"]
    spec = LabelSpec.from_groups(meta["label_groups"]) if meta.get("label_groups") else \
        LabelSpec.from_values(meta["label_values"], meta["regions"])
    sample_of = {(c, int(z)): int(s) for s, c, z in zip(store.index.sample_id, store.index.case, store.index.z)}
    annotated, labels, background = set(), {}, set()
    for case, path in sorted(files.items()):
        if case not in meta["cases"]:
            raise AnnotationError(f"{path}: no image case '{case}' in data_root (annotation files are named "
                                  f"<case>.nii.gz, e.g. {sorted(meta['cases'])[0]}.nii.gz)")
        case_meta = meta["cases"][case]
        label = read_annotation(path, case_meta["shape"], np.asarray(case_meta["affine"]), raw_values, ignore_value)
        moved = np.moveaxis(label, axis, -1)
        for s in annotated_slices(label, axis, ignore_value):
            s = int(s)
            annotated.add((case, s))
            plane = moved[..., s]
            if not plane.any():
                background.add((case, s))
            if (case, s) in sample_of:
                labels[sample_of[(case, s)]] = _pad_slice(spec.to_classes(plane), case_meta)
    return annotated, labels, background


def run_round(*, store_dir, annotations_root, suggestions_dir, round_index: int, out_dir, method: str,
              method_cfg: dict, annotate_cfg: dict, unet_features, training: dict, inputs: dict | None = None) -> None:
    """One annotation round into ``out_dir`` (``suggestions/round<k>``); see the module docstring."""
    store = SliceStore(store_dir)
    meta = store.meta
    axis, ignore_value, per_round = meta["axis"], int(annotate_cfg["ignore_value"]), int(annotate_cfg["per_round"])
    if axis != int(annotate_cfg["axis"]):
        raise ValueError(f"annotate.axis {annotate_cfg['axis']} but the store was made along axis {axis}")
    raw_values = meta["raw_label_values"]
    if ignore_value in raw_values:
        raise DatasetError(f"annotate.ignore_value {ignore_value} is a label value of the dataset {raw_values}")
    files = annotation_files(annotations_root)
    digest = annotations_hash(files)
    annotated, labels, background = read_annotations(store, files, ignore_value)  # raises before any write
    seed = int(annotate_cfg.get("seed", 0))
    strategy = get_strategy(module_name(method, method_cfg))

    previous = _previous_round(suggestions_dir, round_index)
    carried, previously_annotated = [], set()
    if previous is not None:
        old_plan = pd.read_csv(previous / "plan.csv")
        for row in old_plan.sort_values("rank").itertuples():
            key = (row.case, int(row.slice))
            if key not in annotated:
                carried.append(key)
            elif key in background:
                log.warning("case %s slice %d (suggested in %s) came back all background: accepted (was it "
                            "forgotten?)", row.case, key[1], previous.name)
        if carried:
            log.info("%d suggested slice(s) of %s still unannotated: carried into this plan first", len(carried),
                     previous.name)
        old = pd.read_csv(previous / "annotated.csv")
        previously_annotated = set(zip(old.case, old.slice.astype(int)))

    index = store.index
    sample_of = {(c, int(z)): int(s) for s, c, z in zip(index.sample_id, index.case, index.z)}
    annotated_ids = np.array(sorted(labels), dtype=np.int64)
    carried_ids = {sample_of[k] for k in carried if k in sample_of}
    candidates = np.array([s for s in index.sample_id if s not in labels and s not in carried_ids], dtype=np.int64)
    n_new = min(max(0, per_round - len(carried)), len(candidates))
    if n_new < per_round - len(carried):
        log.warning("only %d unannotated non-blank slices left: suggesting %d", len(candidates), n_new)
    dev = pick_device(training.get("device", "auto"))
    tmp = Path(str(out_dir) + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model, new_keys = None, []
    if len(annotated_ids) == 0:
        label = method if hasattr(strategy, "initial_selection") else "fixed_interval"
        if hasattr(strategy, "initial_selection"):
            ctx = SuggestionContext(store, annotated_ids, candidates, np.array([], np.int64), -1,
                                    rng_for(seed, "annotate", method, "start"), method_cfg, inputs=inputs or {})
            new_ids = [int(s) for s in strategy.initial_selection(ctx, n_new)]
            new_keys = [(index.case[s], int(index.z[s])) for s in new_ids]
        else:
            free = {c: np.array([int(z) for z in g.z if (c, int(z)) not in carried]) for c, g in index.groupby("case")}
            new_keys = fixed_interval(free, n_new, rng=rng_for(seed, "annotate", "start", round_index),
                                      slices_per_volume=int(annotate_cfg.get("start_slices_per_volume", 3)))
        title = f"round {round_index}: start ({label}), no annotated slice yet"
    else:
        label = method
        step = getattr(strategy, "train_round", train_unet_round)
        store.labels = AnnotationLabels((len(index), *meta["images_shape"][2:]), labels)
        previous_model = _previous_model(suggestions_dir, round_index)
        spec = unet_spec(store.n_channels, store.n_classes, unet_features)
        epochs = int(method_cfg.get("epochs", training["epochs_per_round"]))
        cfg = train_config(training, {"epochs": epochs}, stream_seed(seed, "annotate", method, round_index))
        run_id = fingerprint(samples=annotated_ids.tolist(), annotations=digest, previous=str(previous_model),
                             cfg=cfg.__dict__, spec=spec, params=method_cfg)
        log.info("round %d: training on %d annotated slices for %d epochs on %s (from %s)", round_index,
                 len(annotated_ids), epochs, dev, previous_model or "a new network")
        model, spec = step(store, annotated_ids, str(previous_model) if previous_model else None, spec, cfg,
                           device=dev, log_csv=tmp / "train_log.csv", checkpoint_dir=tmp, run_id=run_id,
                           params=method_cfg)
        save_model(tmp / "model.pt", model, spec)
        for checkpoint in tmp.glob("checkpoint*.pt"):
            checkpoint.unlink()
        model.eval()
        new_annotated = np.array(sorted(sample_of[k] for k in annotated - previously_annotated if k in sample_of),
                                 dtype=np.int64)
        last_added = new_annotated if len(new_annotated) else annotated_ids
        ctx = SuggestionContext(store, annotated_ids, candidates, last_added, round_index,
                                rng_for(seed, "annotate", method, round_index), method_cfg,
                                model if getattr(strategy, "USES_MODEL", True) else None, dev, inputs or {})
        new_ids = [int(s) for s in strategy.suggest(n_new, ctx)]
        if len(set(new_ids)) != len(new_ids) or not set(new_ids) <= set(candidates.tolist()):
            raise RuntimeError(f"method {method} suggested duplicate or already annotated slices")
        new_keys = [(index.case[s], int(index.z[s])) for s in new_ids]
        title = (f"round {round_index}: {label} on {len(annotated)} annotated slices "
                 f"(outlines: current model's prediction)")
    keys = carried + new_keys
    score = np.full(len(keys), np.nan)
    if model is not None and keys:
        score = prediction_entropy(model, store, [sample_of[k] for k in keys], dev).round(5)
    plan = pd.DataFrame({"case": [k[0] for k in keys], "axis": axis, "slice": [k[1] for k in keys],
                         "rank": np.arange(1, len(keys) + 1),
                         "method": [CARRIED] * len(carried) + [label] * len(new_keys),
                         "score": score})
    annotated_csv = pd.DataFrame(sorted(annotated), columns=["case", "slice"]).to_csv(index=False)
    write_plan_folder(out_dir, plan, store, annotations=files, raw_values=raw_values, ignore_value=ignore_value,
                      title=title, model=model, device=dev, keep=("model.pt", "train_log.csv"),
                      extra_files={"annotated.csv": annotated_csv, HASH_FILE: digest + "\n"})
    log.info("round %d: %d slices to annotate (%d carried, %d new by %s); %d slices annotated so far", round_index,
             len(keys), len(carried), len(new_keys), label, len(annotated))


def run_plan(*, store_dir, out_dir, budget, plan_cfg: dict, annotate_cfg: dict) -> None:
    """The non-interactive plan: exactly ``budget`` slices over the volumes, in round-folder formats."""
    if budget is None:
        raise ValueError("plan: no budget; give it with --config plan_budget=B (the number of slices to plan)")
    store = SliceStore(store_dir)
    free = {c: g.z.to_numpy() for c, g in store.index.groupby("case")}
    keys = fixed_interval(free, int(budget), rng=rng_for(int(plan_cfg.get("seed", 0)), "plan"),
                          n_volumes=plan_cfg.get("n_volumes"),
                          slices_per_volume=int(plan_cfg.get("slices_per_volume", 3)),
                          selection=plan_cfg.get("selection", "fixed_interval"))
    plan = pd.DataFrame({"case": [k[0] for k in keys], "axis": store.meta["axis"], "slice": [k[1] for k in keys],
                         "rank": np.arange(1, len(keys) + 1), "method": plan_cfg.get("selection", "fixed_interval"),
                         "score": np.nan})
    n_cases = plan.case.nunique()
    write_plan_folder(out_dir, plan, store, annotations={}, raw_values=store.meta["raw_label_values"],
                      ignore_value=int(annotate_cfg["ignore_value"]),
                      title=f"plan: {len(plan)} slices over {n_cases} volumes ({plan.method.iloc[0]})")
    log.info("plan: %d slices over %d of %d volumes into %s", len(plan), n_cases, len(free), out_dir)
