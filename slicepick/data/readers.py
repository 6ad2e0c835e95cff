"""Readers of on-disk dataset layouts.

A reader turns a data folder into a list of :class:`CaseFiles`; :func:`load_case` reads one
case into memory. Every reader is read-only on the data folder.

Shapes: images are ``(C, X, Y, Z)`` float32 (C = modalities), labels ``(X, Y, Z)`` with the
dataset's raw label values; Z is the axial (slice) axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


class DatasetError(ValueError):
    """Bad input data; the message names the case, the file and the reason."""


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    images: tuple[Path, ...]  # one file per modality, in the dataset's modality order
    label: Path | None


@dataclass
class LoadedCase:
    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32
    label: np.ndarray | None  # (X, Y, Z) raw label values
    affine: np.ndarray  # (4, 4)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def find_brats_cases(data_root: str | Path, modalities) -> list[CaseFiles]:
    """BraTS layout: ``<case>/<case>_<modality>.nii.gz`` and ``<case>/<case>_seg.nii.gz``."""
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetError(f"data_root {root}: not a folder")
    cases = []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        cid = case_dir.name
        images = tuple(case_dir / f"{cid}_{m}.nii.gz" for m in modalities)
        label = case_dir / f"{cid}_seg.nii.gz"
        cases.append(CaseFiles(cid, images, label if label.exists() else None))
    if not cases:
        raise DatasetError(f"data_root {root}: no case folders found (BraTS layout expects <case>/<case>_<modality>.nii.gz)")
    return cases


READERS = {"brats": find_brats_cases}


def find_cases(layout: str, data_root: str | Path, dataset_cfg: dict) -> list[CaseFiles]:
    if layout not in READERS:
        raise DatasetError(f"dataset.layout '{layout}' is not one of {sorted(READERS)}")
    return READERS[layout](data_root, dataset_cfg["modalities"])


def read_shape(case: CaseFiles) -> tuple[int, ...]:
    """Spatial shape from the header only (no voxel data read)."""
    return tuple(int(s) for s in nib.load(str(case.images[0])).shape[:3])


def load_case(case: CaseFiles) -> LoadedCase:
    """Read all modalities and the label of one case."""
    volumes, affine = [], None
    for path in case.images:
        if not path.exists():
            raise DatasetError(f"case {case.case_id}: {path}: file missing")
        try:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as err:  # nibabel raises many kinds on corrupt files
            raise DatasetError(f"case {case.case_id}: {path}: unreadable ({err})") from err
        if data.ndim != 3:
            raise DatasetError(f"case {case.case_id}: {path}: expected a 3D volume, got shape {data.shape}")
        volumes.append(data)
        affine = img.affine if affine is None else affine
    label = None
    if case.label is not None:
        label = np.asarray(nib.load(str(case.label)).dataobj).astype(np.int16)
    return LoadedCase(case.case_id, np.stack(volumes), label, np.asarray(affine, dtype=np.float64))
