"""From the slice store back to the input's own voxel grid.

The store holds each case as axial slices of its volume reoriented to RAS by the readers, with
the blank end slices cropped (``z_range``), zero-padded in-plane to a common size (``pad``,
``padded_hw``) and optionally resized (``dataset.resize``). Everything the workflow writes as
NIfTI, and every score it reports, is on the input's grid: these functions undo those steps, in
reverse order. ``case_meta`` is the case's entry of ``meta.json`` (``store.meta["cases"][case]``).

Shapes: a store-space volume is ``(H, W, Z')``: the stored in-plane size and the ``Z'`` stored
slices of the case, in slice order (``store.case_samples``). The RAS grid is ``original_shape``
``(X, Y, Z)``; the input grid is ``input_shape``, the voxel array of the input files as stored
(real BraTS files: LPS, affine diag(-1, -1, 1)).
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from nibabel import orientations


def store_to_ras(classes_hwz: np.ndarray, case_meta: dict) -> np.ndarray:
    """Store-space class volume ``(H, W, Z')`` -> uint8 class volume on the case's RAS grid
    ``original_shape``: resize undone (nearest neighbour), padding removed, the cropped blank slices
    background (class 0)."""
    h, w = case_meta["padded_hw"]
    vol = torch.as_tensor(np.moveaxis(np.asarray(classes_hwz), -1, 0)[:, None].astype(np.float32))
    vol = F.interpolate(vol, size=(h, w), mode="nearest")[:, 0].numpy().astype(np.uint8)
    (px0, px1), (py0, py1) = case_meta["pad"]
    vol = vol[:, px0:h - px1, py0:w - py1]
    out = np.zeros(case_meta["original_shape"], np.uint8)
    z0, z1 = case_meta["z_range"]
    out[..., z0:z1] = np.moveaxis(vol, 0, -1)
    return out


def ras_to_input(volume_ras: np.ndarray, case_meta: dict) -> np.ndarray:
    """A volume on the case's RAS grid -> the voxel array of the input files as stored, undoing the
    readers' reorientation (``input_ornt``: the stored axes' nibabel orientation, io_orientation)."""
    to_input = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), np.asarray(case_meta["input_ornt"]))
    out = orientations.apply_orientation(volume_ras, to_input)
    if list(out.shape) != list(case_meta["input_shape"]):
        raise ValueError(f"volume of shape {volume_ras.shape} is not on the case's RAS grid "
                         f"{case_meta['original_shape']} (input shape {case_meta['input_shape']})")
    return np.ascontiguousarray(out)


def to_input_grid(classes_hwz: np.ndarray, case_meta: dict) -> np.ndarray:
    """A case's store-space class volume ``(H, W, Z')`` -> uint8 class indices on the input file's
    own voxel array (``input_shape``), so that voxel ``[i, j, k]`` is voxel ``[i, j, k]`` of the
    case's image and label files; their affine is ``case_meta["input_affine"]``.

    The one way back to the input's grid: predictions, and any other per-case output (annotation
    suggestions, masks) go through it. Raw label values: ``np.asarray(label_values)[classes]``, or
    :func:`label_image` for a NIfTI.
    """
    return ras_to_input(store_to_ras(classes_hwz, case_meta), case_meta)


def label_image(classes_hwz: np.ndarray, case_meta: dict, label_values) -> nib.Nifti1Image:
    """A case's store-space class volume as an integer NIfTI label map in the dataset's raw label
    values (BraTS 2019: 4 for enhancing tumour), on the input's voxel grid with the input's affine."""
    values = np.asarray(label_values)
    raw = values.astype(np.min_scalar_type(int(values.max())))[to_input_grid(classes_hwz, case_meta)]
    img = nib.Nifti1Image(raw, np.asarray(case_meta["input_affine"], dtype=np.float64))
    img.header.set_xyzt_units("mm")
    return img
