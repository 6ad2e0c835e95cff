"""Readers of on-disk dataset layouts.

A reader turns a data folder into a list of :class:`CaseFiles`; :func:`load_case` reads one
case into memory. Every reader is read-only on the data folder. Layouts (``dataset.layout``):

``brats``  ``<case>/<case>_<modality>.nii.gz`` and ``<case>/<case>_seg.nii.gz`` (BraTS 2019-2021);
           BraTS 2023+ names them ``<case>-<modality>.nii.gz``, ``<case>-seg.nii.gz``: both are read,
           ``.nii`` too. Case folders may sit one level down (BraTS 2019: ``HGG/``, ``LGG/``).
``msd``    Medical Segmentation Decathlon / nnU-Net: ``dataset.json``, ``imagesTr/<case>_0000.nii.gz``
           (one file per channel), ``labelsTr/<case>.nii.gz``; channel names and labels come from
           dataset.json (:func:`read_dataset_json`).
``pairs``  a plain folder of image and label-map files found by two path patterns
           (``dataset.pairs``), e.g. MALC ``{part}-images/{case}.nii`` and ``{part}-labels/{case}_glm.nii``.

Shapes: images are ``(C, X, Y, Z)`` float32 (C = modalities), labels ``(X, Y, Z)`` with the
dataset's raw label values. Volumes are turned to the closest canonical (RAS) orientation on
reading, so Z is the inferior-superior axis and a slice along it is axial, whatever the storage.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations


class DatasetError(ValueError):
    """Bad input data; the message names the case, the file and the reason."""


def error_text(err: BaseException) -> str:
    """An exception as one line (nibabel's messages can span several)."""
    return " ".join(f"{type(err).__name__}: {err}".split())


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    images: tuple[Path, ...]  # one file per modality, in the dataset's modality order (may not exist)
    label: Path | None  # the label map's expected path (may not exist); None: the layout has none


@dataclass
class LoadedCase:
    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32, RAS
    label: np.ndarray | None  # (X, Y, Z) raw label values, RAS
    affine: np.ndarray  # (4, 4) of the RAS arrays
    input_affine: np.ndarray  # (4, 4) of the files as stored (BraTS: LPS); with input_ornt, undoes the reorientation
    input_ornt: np.ndarray  # (3, 2) nibabel orientation taking the stored voxel axes to RAS (io_orientation)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


NIFTI_ENDINGS = (".nii.gz", ".nii")


def _visible(path: Path) -> bool:
    # dot files: macOS resource forks ("._case.nii.gz") in MSD archives, .snakemake, ...
    return not path.name.startswith(".") and path.name != "__MACOSX"


def _is_nifti(path: Path) -> bool:
    return path.is_file() and _visible(path) and path.name.endswith(NIFTI_ENDINGS)


def _data_folder(data_root) -> Path:
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetError(f"data_root {root}: not a folder")
    return root


# ---------------------------------------------------------------------------------------- BraTS

def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _is_case_dir(folder: Path) -> bool:
    """Holds NIfTI files, or nothing below it (an empty case folder is a case missing its files)."""
    return any(_is_nifti(p) for p in folder.iterdir()) or not _subdirs(folder)


def _brats_case_dirs(root: Path) -> list[Path]:
    """Case folders at the top level, or one level down (BraTS 2019: ``HGG/``, ``LGG/``)."""
    found = []
    for folder in _subdirs(root):
        found.extend([folder] if _is_case_dir(folder) else [sub for sub in _subdirs(folder) if _is_case_dir(sub)])
    return found


def _brats_file(folder: Path, case_id: str, suffix: str) -> Path:
    """``<case>_<suffix>`` (BraTS 2019-2021) or ``<case>-<suffix>`` (2023+), .nii.gz or .nii."""
    for sep in ("_", "-"):
        for ending in NIFTI_ENDINGS:
            path = folder / f"{case_id}{sep}{suffix}{ending}"
            if path.is_file():
                return path
    sep = "-" if any(p.name.startswith(f"{case_id}-") for p in folder.iterdir()) else "_"
    return folder / f"{case_id}{sep}{suffix}.nii.gz"  # the expected name, reported as missing


def find_brats_cases(data_root: str | Path, modalities) -> list[CaseFiles]:
    """BraTS layout: ``<case>/<case>_<modality>.nii.gz`` and ``<case>/<case>_seg.nii.gz``."""
    root = _data_folder(data_root)
    cases = []
    for case_dir in _brats_case_dirs(root):
        cid = case_dir.name
        images = tuple(_brats_file(case_dir, cid, m) for m in modalities)
        cases.append(CaseFiles(cid, images, _brats_file(case_dir, cid, "seg")))
    if not cases:
        raise DatasetError(f"data_root {root}: empty dataset, no case folders found "
                           "(BraTS layout expects <case>/<case>_<modality>.nii.gz)")
    return cases


# ---------------------------------------------------------------------------------- MSD / nnU-Net

def read_dataset_json(data_root: str | Path) -> dict:
    """Channel names, labels and file ending from an MSD (v1) or nnU-Net v2 ``dataset.json``.

    Returns ``modalities`` (channel order), ``label_values`` (background 0 first), ``regions``
    (one per foreground label; a v2 region label such as ``"whole tumor": [1, 2, 3]`` keeps its
    list), ``file_ending`` and ``training`` (case ids listed in the file, or None).
    """
    root = _data_folder(data_root)
    path = root / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"data_root {root}: {path.name} missing (MSD / nnU-Net layout)")
    try:
        desc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: unreadable ({error_text(err)})") from err
    channels = desc.get("channel_names", desc.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetError(f"{path}: no 'channel_names' (nnU-Net v2) or 'modality' (MSD) mapping")
    try:
        order = sorted((int(k), str(v)) for k, v in channels.items())
    except ValueError as err:
        raise DatasetError(f"{path}: channel keys must be 0, 1, ... ({error_text(err)})") from err
    if [k for k, _ in order] != list(range(len(order))):
        raise DatasetError(f"{path}: channel keys {[k for k, _ in order]} are not 0..{len(order) - 1}")

    labels = desc.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{path}: no 'labels' mapping")
    if all(isinstance(v, str) for v in labels.values()):  # MSD / v1: {"0": "background", "1": "edema"}
        try:
            labels = {name: int(k) for k, name in labels.items()}
        except ValueError as err:
            raise DatasetError(f"{path}: label keys must be integers ({error_text(err)})") from err
    if "ignore" in labels:
        raise DatasetError(f"{path}: an 'ignore' label (partial annotation) is not supported")
    values, regions = set(), {}
    for name, value in labels.items():
        members = value if isinstance(value, list) else [value]
        if not members or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in members):
            raise DatasetError(f"{path}: label '{name}': {value!r} is not a non-negative integer or a list of them")
        values.update(members)
        if members != [0]:
            regions[str(name)] = sorted(members)
    if 0 not in values:
        raise DatasetError(f"{path}: labels must include the background, 0")

    ending = desc.get("file_ending", ".nii.gz")
    if ending not in NIFTI_ENDINGS:
        raise DatasetError(f"{path}: file_ending '{ending}': only NIfTI ({', '.join(NIFTI_ENDINGS)}) is read")
    training = None
    if isinstance(desc.get("training"), list):
        training = [_strip_ending(Path(str(item.get("label") or item.get("image"))).name)
                    for item in desc["training"] if isinstance(item, dict)]
    return {
        "modalities": [name for _, name in order],
        "label_values": [0] + sorted(values - {0}),
        "regions": regions,
        "file_ending": ending,
        "training": training,
    }


def _strip_ending(name: str) -> str:
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def find_msd_cases(data_root: str | Path, labels: bool = True) -> list[CaseFiles]:
    """MSD / nnU-Net layout: ``imagesTr/<case>_<XXXX><ending>`` and ``labelsTr/<case><ending>``.

    Cases are the union of label files, channel files and the ``training`` list of dataset.json,
    so that a case missing a channel or its label is reported rather than silently left out.
    ``labels=False`` (annotate mode): images only, ``labelsTr/`` may be absent.
    """
    root = _data_folder(data_root)
    desc = read_dataset_json(root)
    file_ending, training_ids, n_channels = desc["file_ending"], desc["training"], len(desc["modalities"])
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir) if labels else (images_dir,):
        if not folder.is_dir():
            raise DatasetError(f"data_root {root}: {folder.name}/ missing (MSD / nnU-Net layout)")
    if not labels:
        training_ids = None  # dataset.json's list names labelled cases; the images are the cases here
    channel = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    ids = set(training_ids or [])
    for path in images_dir.iterdir():
        match = channel.match(path.name)
        if match and _visible(path):
            ids.add(match["case"])
    if labels:
        ids.update(path.name[: -len(file_ending)] for path in labels_dir.iterdir()
                   if _visible(path) and path.name.endswith(file_ending))
    if not ids:
        raise DatasetError(f"data_root {root}: empty dataset, no cases in imagesTr/ or labelsTr/ "
                           f"(expected imagesTr/<case>_0000{file_ending} and labelsTr/<case>{file_ending})")
    # a training list that names a case twice gives a duplicate case id: kept, for validation to report
    listed = Counter(training_ids or [])
    cases = []
    for cid in sorted(ids):
        images = tuple(images_dir / f"{cid}_{c:04d}{file_ending}" for c in range(n_channels))
        label = labels_dir / f"{cid}{file_ending}" if labels else None
        cases.extend([CaseFiles(cid, images, label)] * max(1, listed[cid]))
    return cases


# -------------------------------------------------------------------------------- image/label pairs

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _pattern_regex(pattern: str) -> re.Pattern:
    """``{name}`` placeholders -> named groups (one path component each); the rest literal."""
    parts, pos, seen = [], 0, set()
    for match in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[pos:match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
        seen.add(name)
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts) + "$")


def _fill(pattern: str, values: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], pattern)


def find_pair_cases(data_root: str | Path, modalities, images: str, labels: str) -> list[CaseFiles]:
    """Image and label-map pairs found by path patterns relative to data_root.

    ``images`` names ``{case}`` (the case id) and, with several modalities, ``{modality}``; any
    other placeholder (e.g. ``{part}``) matches one path component and is reused in ``labels``.
    """
    root = _data_folder(data_root)
    names = set(_PLACEHOLDER.findall(images))
    if "case" not in names:
        raise DatasetError(f"dataset.pairs.images '{images}': must contain {{case}}")
    if len(modalities) > 1 and "modality" not in names:
        raise DatasetError(f"dataset.pairs.images '{images}': must contain {{modality}} with several modalities")
    extra = set(_PLACEHOLDER.findall(labels)) - (names - {"modality"})
    if extra:
        raise DatasetError(f"dataset.pairs.labels '{labels}': placeholders {sorted(extra)} are not in dataset.pairs.images")
    first = images.replace("{modality}", modalities[0])
    image_re, label_re = _pattern_regex(first), _pattern_regex(labels)
    cases = []
    for path in sorted(root.glob(_PLACEHOLDER.sub("*", first))):
        rel = path.relative_to(root).as_posix()
        match = image_re.match(rel)
        # an image pattern such as {case}.nii also matches the labels' {case}_glm.nii: not an image
        if not match or not _is_nifti(path) or label_re.match(rel):
            continue
        values = match.groupdict()
        paths = tuple(root / _fill(images, {**values, "modality": m}) for m in modalities)
        cases.append(CaseFiles(values["case"], paths, root / _fill(labels, values)))
    if not cases:
        raise DatasetError(f"data_root {root}: empty dataset, no file matches dataset.pairs.images '{first}'")
    return cases


# ------------------------------------------------------------------------------------------ choose

# Run from the repository folder, snakemake merges the embedded config.yaml (BraTS keys) under --configfile.
_MERGE_HINT = "; snakemake merges in config.yaml's unless run with --replace-workflow-config"


def resolve_dataset(layout: str, data_root: str | Path, dataset_cfg: dict) -> dict:
    """The dataset config with what the data folder declares filled in (MSD: dataset.json).

    For ``msd``, ``modalities`` and ``label_values`` come from dataset.json; when the config gives
    them too they must agree. ``regions`` from the config, when given, replace dataset.json's
    one-region-per-label (e.g. BraTS WT/TC/ET on an MSD brain-tumour dataset).
    """
    ds = dict(dataset_cfg)
    if layout != "msd":
        return ds
    desc = read_dataset_json(data_root)
    if ds.get("modalities") and list(ds["modalities"]) != desc["modalities"]:
        raise DatasetError(f"dataset.modalities {list(ds['modalities'])} differ from dataset.json's channel names "
                           f"{desc['modalities']} (leave dataset.modalities out to use dataset.json's{_MERGE_HINT})")
    ds["modalities"] = desc["modalities"]
    if ds.get("label_groups"):
        return ds
    if ds.get("label_values") and set(ds["label_values"]) != set(desc["label_values"]):
        raise DatasetError(f"dataset.label_values {list(ds['label_values'])} differ from dataset.json's labels "
                           f"{desc['label_values']} (leave dataset.label_values out to use dataset.json's{_MERGE_HINT})")
    ds["label_values"] = ds.get("label_values") or desc["label_values"]
    ds["regions"] = ds.get("regions") or desc["regions"]
    return ds


LAYOUTS = ("brats", "msd", "pairs")


def find_cases(layout: str, data_root: str | Path, dataset_cfg: dict, labels: bool = True) -> list[CaseFiles]:
    """The cases of ``data_root`` in ``layout`` (MSD: channels from dataset.json).

    ``labels=False`` (annotate mode): the images only; every case's ``label`` is None.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"dataset.layout '{layout}' is not one of {list(LAYOUTS)}")
    if not labels:
        return [CaseFiles(c.case_id, c.images, None) for c in _find_cases(layout, data_root, dataset_cfg, False)]
    return _find_cases(layout, data_root, dataset_cfg, True)


def _find_cases(layout: str, data_root, dataset_cfg: dict, labels: bool) -> list[CaseFiles]:
    if layout == "brats":
        return find_brats_cases(data_root, dataset_cfg["modalities"])
    if layout == "msd":
        return find_msd_cases(data_root, labels)
    pairs = dataset_cfg["pairs"]
    return find_pair_cases(data_root, dataset_cfg["modalities"], pairs["images"], pairs["labels"])


# ------------------------------------------------------------------------------------------ read

def spatial_shape(shape) -> tuple[int, int, int] | None:
    """The 3D shape of a header shape; trailing singleton axes are allowed ((X, Y, Z, 1) is 3D).
    None when the volume is not 3D."""
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 3 and all(s == 1 for s in shape[3:]):
        return shape[:3]
    return None


def open_volume(path: Path) -> nib.spatialimages.SpatialImage:
    """Header of a NIfTI file (voxels are read on demand)."""
    return nib.load(str(path), mmap=False)


def input_orientation(affine) -> np.ndarray:
    """(3, 2) nibabel orientation taking a file's stored voxel axes to the closest RAS axes."""
    return orientations.io_orientation(affine)


def read_volume(img, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of a 3D image in closest-canonical (RAS) orientation, and the matching affine."""
    shape = spatial_shape(img.shape)
    data = np.asarray(img.dataobj, dtype=dtype).reshape(shape)
    ornt = input_orientation(img.affine)
    if np.array_equal(ornt, orientations.axcodes2ornt("RAS")):
        return data, np.asarray(img.affine, dtype=np.float64)
    affine = img.affine @ orientations.inv_ornt_aff(ornt, shape)
    return orientations.apply_orientation(data, ornt), np.asarray(affine, dtype=np.float64)


def read_shape(case: CaseFiles) -> tuple[int, ...]:
    """Spatial shape in RAS orientation, from the header only (no voxel data read)."""
    img = open_volume(case.images[0])
    shape = spatial_shape(img.shape)
    target_axis = orientations.io_orientation(img.affine)[:, 0]  # where each stored axis goes
    return tuple(shape[axis] for axis in np.argsort(target_axis))


def load_case(case: CaseFiles) -> LoadedCase:
    """Read all modalities and the label of one (validated) case, in RAS orientation."""
    image, affine, input_affine = None, None, None
    for c, path in enumerate(case.images):
        try:
            img = open_volume(path)
            data, vol_affine = read_volume(img, np.float32)
        except Exception as err:  # validation reads every file first; this is a file changed since
            raise DatasetError(f"case {case.case_id}: {path}: unreadable ({error_text(err)})") from err
        if image is None:
            image = np.empty((len(case.images), *data.shape), np.float32)
            affine, input_affine = vol_affine, np.asarray(img.affine, dtype=np.float64)
        image[c] = data
    label = None
    if case.label is not None:
        label = read_volume(open_volume(case.label))[0].astype(np.int32)
    return LoadedCase(case.case_id, image, label, affine, input_affine, input_orientation(input_affine))
