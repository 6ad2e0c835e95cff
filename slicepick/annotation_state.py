"""Annotate mode's bookkeeping: the annotation files, their checks, and which round comes next.

Read when the workflow is parsed (numpy and nibabel only, no torch), so that ``snakemake annotate``
decides from files alone whether a new round is due: the round index is the number of earlier
round folders, and a new round is made only when the annotations folder's contents differ from
the hash recorded in the newest round folder. Unchanged annotations: nothing to do, nothing written.

An annotation file is ``<case>.nii.gz`` (or ``.nii``) in ``annotations_root``, on the image grid
(same shape; affine equal within 1e-4, as annotation tools rewrite it in float32), holding label
values of the dataset or ``ignore_value`` (a voxel not annotated yet, nnU-Net's ignore label).
Slice indices are along ``axis`` in the image file's own voxel order, 0-based.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from slicepick.data.readers import (NIFTI_ENDINGS, DatasetError, error_text, find_cases, open_volume,
                                    resolve_dataset, spatial_shape)

AFFINE_TOLERANCE = 1e-4
HASH_FILE = "annotations.sha256"  # in every round folder: the annotations the round was made from
_ROUND = re.compile(r"^round(\d+)$")


class AnnotationError(DatasetError):
    """A bad annotation file; the message is one line naming the file."""


def annotate_cases(data_root, dataset_cfg: dict) -> list:
    """The image cases of ``data_root`` (labels, if the layout has any, are not read)."""
    layout = "brats" if dataset_cfg["layout"] == "synthetic" else dataset_cfg["layout"]
    ds = resolve_dataset(layout, data_root, dataset_cfg)
    return find_cases(layout, data_root, ds, labels=False)


def annotation_files(annotations_root) -> dict[str, Path]:
    """``case -> file`` of the NIfTI files in ``annotations_root`` (other files are not read)."""
    if annotations_root is None:
        return {}
    root = Path(annotations_root)
    if not root.is_dir():
        raise AnnotationError(f"annotations_root {root}: not a folder")
    files: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        ending = next((e for e in NIFTI_ENDINGS if path.name.endswith(e)), None)
        if ending is None:
            continue  # e.g. a .seg.nrrd left beside the exported NIfTI
        case = path.name[: -len(ending)]
        if case in files:
            raise AnnotationError(f"{path}: case {case} has two annotation files ({files[case].name} and {path.name})")
        files[case] = path
    return files


def annotations_hash(files: dict[str, Path]) -> str:
    """SHA-256 over the case names and file bytes: changes exactly when an annotation file does."""
    digest = hashlib.sha256()
    for case in sorted(files):
        digest.update(case.encode() + b"\0")
        with open(files[case], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def round_folders(suggestions_dir) -> list[Path]:
    """Finished round folders ``round<k>``, by k (temporary folders of a running round are not)."""
    folder = Path(suggestions_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _ROUND.match(p.name))]
    return [p for _, p in sorted(found)]


def next_round(suggestions_dir, annotations_root) -> tuple[int, bool, str]:
    """(round index, whether it is due, hash of the annotations now).

    Due when there is no round yet or the annotations differ from the newest round's; when not
    due, the index is that of the newest round.
    """
    current = annotations_hash(annotation_files(annotations_root))
    rounds = round_folders(suggestions_dir)
    if not rounds:
        return 0, True, current
    recorded = rounds[-1] / HASH_FILE
    previous = recorded.read_text().strip() if recorded.is_file() else None
    if previous == current:
        return len(rounds) - 1, False, current
    return len(rounds), True, current


def image_geometry(cases) -> dict[str, tuple[tuple[int, int, int], np.ndarray, Path]]:
    """``case -> (shape, affine, first image file)`` from the headers (file voxel order, no reorientation)."""
    out = {}
    for case in cases:
        path = case.images[0]
        try:
            img = open_volume(path)
        except Exception as err:
            raise DatasetError(f"case {case.case_id}: {path}: unreadable ({error_text(err)})") from err
        shape = spatial_shape(img.shape)
        if shape is None:
            raise DatasetError(f"case {case.case_id}: {path}: expected a 3D volume, got shape {tuple(img.shape)}")
        out[case.case_id] = (shape, np.asarray(img.affine, np.float64), Path(path))
    return out


def read_annotation(path, shape, affine, raw_values, ignore_value: int) -> np.ndarray:
    """The label map of one annotation file as int64, checked against the image's grid and the label set."""
    path = Path(path)
    try:
        img = open_volume(path)
        got_shape = spatial_shape(img.shape)
        data = np.asarray(img.dataobj)
    except Exception as err:
        raise AnnotationError(f"{path}: unreadable annotation file ({error_text(err)})") from err
    if got_shape != tuple(shape):
        raise AnnotationError(f"{path}: shape {tuple(img.shape)} differs from the image's {tuple(shape)}")
    if not np.allclose(img.affine, affine, rtol=0, atol=AFFINE_TOLERANCE):
        diff = float(np.abs(np.asarray(img.affine) - affine).max())
        raise AnnotationError(f"{path}: affine differs from the image's by up to {diff:.3g} (tolerance "
                              f"{AFFINE_TOLERANCE}); save the label map on the image's grid")
    data = data.reshape(got_shape)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise AnnotationError(f"{path}: label map has non-integer values")
    data = data.astype(np.int64)
    allowed = set(int(v) for v in raw_values) | {int(ignore_value)}
    unknown = sorted(set(np.unique(data).tolist()) - allowed)
    if unknown:
        shown = ", ".join(map(str, unknown[:8])) + (", ..." if len(unknown) > 8 else "")
        raise AnnotationError(f"{path}: values [{shown}] are neither label values {sorted(raw_values)} nor the "
                              f"ignore value {ignore_value}")
    return data


def check_annotations(files: dict[str, Path], geometry: dict, raw_values, ignore_value: int) -> None:
    """Read and check every annotation file; the first bad one raises (one line naming it)."""
    for case, path in sorted(files.items()):
        if case not in geometry:
            raise AnnotationError(f"{path}: no image case '{case}' in data_root (annotation files are named "
                                  f"<case>.nii.gz, e.g. {next(iter(sorted(geometry)), 'case')}.nii.gz)")
        shape, affine, _ = geometry[case]
        read_annotation(path, shape, affine, raw_values, ignore_value)


def annotated_slices(annotation: np.ndarray, axis: int, ignore_value: int) -> np.ndarray:
    """Indices along ``axis`` of the slices with no voxel at ``ignore_value`` (annotated)."""
    other = tuple(a for a in range(annotation.ndim) if a != axis)
    return np.flatnonzero(~np.any(annotation == ignore_value, axis=other))


def raw_label_values(data_root, dataset_cfg: dict) -> list[int]:
    """Every raw label value the dataset declares (msd: dataset.json's when the config gives none)."""
    from slicepick.data.labels import LabelSpec

    layout = "brats" if dataset_cfg["layout"] == "synthetic" else dataset_cfg["layout"]
    ds = resolve_dataset(layout, data_root, dataset_cfg)
    if ds.get("label_groups"):
        return LabelSpec.from_groups(ds["label_groups"]).raw_values
    return sorted(int(v) for v in ds["label_values"])
