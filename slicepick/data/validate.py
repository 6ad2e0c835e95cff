"""Validation of a whole dataset before any compute, reporting every bad case in one pass.

Like nnU-Net's ``verify_dataset_integrity``: a user with 300 cases gets the full list once. Every
file of every case is read (streamed, one volume in memory at a time) and checked for:

- missing file (a modality, or the label map), unreadable or truncated file
- a volume that is not 3D (2D, or 4D with more than one frame)
- image and label of a different shape or affine than the case's first file
- NaN or Inf voxels; an all-zero image
- label values outside the declared set, or not integers
- a case id used by more than one case

Each problem is one line ``case <id>: <file>: <reason>``.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slicepick.data.readers import CaseFiles, DatasetError, error_text, open_volume, spatial_shape

log = logging.getLogger(__name__)

AFFINE_TOLERANCE_MM = 1e-3  # image and label affines agree to a micrometre (float noise only)


@dataclass(frozen=True)
class Problem:
    case_id: str
    file: str
    reason: str

    def __str__(self) -> str:
        return f"case {self.case_id}: {self.file}: {self.reason}"


def _format_values(values, limit: int = 12) -> str:
    values = [int(v) for v in values]
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def label_values_in(data: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer label map (fast path for small non-negative ranges)."""
    if data.size and data.min() >= 0 and data.max() < 1 << 16:
        return np.flatnonzero(np.bincount(data.ravel().astype(np.intp, copy=False)))
    return np.unique(data)


def check_case(case: CaseFiles, modalities, raw_values) -> list[Problem]:
    """Every problem of one case; reads each file once, one volume in memory at a time."""
    problems: list[Problem] = []
    declared = set(int(v) for v in raw_values)
    reference = None  # (path, shape, affine) of the case's first readable file
    files = [(m, path) for m, path in zip(modalities, case.images)]
    if case.label is not None:  # None: images only (annotate mode reads no labels)
        files.append((None, case.label))
    for modality, path in files:
        kind = "label" if modality is None else f"image ({modality})"

        def bad(reason, path=path):
            problems.append(Problem(case.case_id, str(path), reason))

        if path is None or not Path(path).is_file():
            bad("label file missing" if modality is None else f"missing modality '{modality}'")
            continue
        try:
            img = open_volume(path)
        except Exception as err:  # nibabel raises many kinds on corrupt headers
            bad(f"unreadable ({error_text(err)})")
            continue
        shape = spatial_shape(img.shape)
        if shape is None:
            bad(f"expected a 3D volume, got {len(img.shape)}D shape {tuple(img.shape)}")
            continue
        try:
            data = np.asarray(img.dataobj)
        except Exception as err:
            bad(f"unreadable or truncated ({error_text(err)})")
            continue
        if reference is None:
            reference = (Path(path), shape, img.affine)
        else:
            ref_path, ref_shape, ref_affine = reference
            if shape != ref_shape:
                bad(f"{kind} shape {shape} differs from {ref_shape} of {ref_path.name}")
            elif not np.allclose(img.affine, ref_affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
                diff = float(np.abs(img.affine - ref_affine).max())
                bad(f"{kind} affine differs from that of {ref_path.name} (by up to {diff:.4g} mm)")
        if np.issubdtype(data.dtype, np.floating):
            finite = np.isfinite(data)
            if not finite.all():
                n_nan = int(np.isnan(data).sum())
                bad(f"{n_nan} NaN and {int((~finite).sum()) - n_nan} Inf voxels")
                continue
            del finite
        if modality is not None:
            if not data.any():
                bad("all-zero image")
            continue
        if np.issubdtype(data.dtype, np.floating):
            if not np.array_equal(data, np.round(data)):
                bad("label map has non-integer values")
                continue
            data = data.astype(np.int64)
        unknown = sorted(set(label_values_in(data).tolist()) - declared)
        if unknown:
            bad(f"label values {_format_values(unknown)} not in the declared set {_format_values(sorted(declared))}")
    return problems


def validate_cases(cases: list[CaseFiles], modalities, raw_values) -> tuple[list[CaseFiles], list[Problem]]:
    """Check every case; returns the good cases and every problem found (none: all good)."""
    if not cases:
        raise DatasetError("empty dataset: no cases found")
    counts = Counter(c.case_id for c in cases)
    good, problems = [], []
    for i, case in enumerate(cases):
        found = check_case(case, modalities, raw_values)
        if counts[case.case_id] > 1:
            where = case.label.parent if case.label is not None else case.images[0].parent
            found.insert(0, Problem(case.case_id, str(where),
                                    f"duplicate case id ({counts[case.case_id]} cases are named {case.case_id})"))
        log.info("validated %s (%d/%d): %s", case.case_id, i + 1, len(cases),
                 f"{len(found)} problem(s)" if found else "ok")
        problems.extend(found)
        if not found:
            good.append(case)
    return good, problems
