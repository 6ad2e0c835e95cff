"""How raw label values become network classes and evaluated regions.

Two ways to declare them in ``dataset``:

- ``label_values`` (background first) and ``regions``: each raw value is a class of its own, and a
  region is a set of raw values (BraTS: WT = {1, 2, 4}).
- ``label_groups``: a table of named groups of raw values (MALC: 134 labels into 25 structures).
  The first group is the background (class 0); every other group is one class and one evaluated
  region, named after the group.

Either way the slice store records, per class, the value written in predictions
(``label_values`` in meta.json; for groups, the group index) and the regions in those values, so
evaluation reads the same meta keys for both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slicepick.data.readers import DatasetError

MAX_CLASSES = 256  # classes are stored as uint8


@dataclass(frozen=True)
class LabelSpec:
    class_values: tuple[int, ...]  # per class: value written for it (meta label_values), background first
    class_of_raw: dict[int, int]  # raw label value in the files -> class index
    regions: dict[str, tuple[int, ...]]  # evaluated region -> class values
    groups: dict[str, tuple[int, ...]] | None = None  # group name -> raw values, when declared by groups

    @property
    def raw_values(self) -> list[int]:
        """Every raw label value the dataset declares; any other value is bad input."""
        return sorted(self.class_of_raw)

    @classmethod
    def from_values(cls, label_values, regions) -> "LabelSpec":
        values = tuple(int(v) for v in label_values)
        if len(values) < 2 or len(set(values)) != len(values):
            raise DatasetError(f"dataset.label_values {list(values)}: need at least 2 distinct values, background first")
        _check_count(len(values))
        for name, members in regions.items():
            missing = sorted(set(int(v) for v in members) - set(values))
            if missing:
                raise DatasetError(f"dataset.regions.{name}: label values {missing} are not in dataset.label_values")
        return cls(values, {v: i for i, v in enumerate(values)},
                   {name: tuple(int(v) for v in members) for name, members in regions.items()})

    @classmethod
    def from_groups(cls, label_groups: dict) -> "LabelSpec":
        groups = {str(name): tuple(int(v) for v in raw) for name, raw in label_groups.items()}
        if len(groups) < 2:
            raise DatasetError("dataset.label_groups: need the background group and at least one structure")
        _check_count(len(groups))
        class_of_raw, owner = {}, {}
        for index, (name, raw) in enumerate(groups.items()):
            for value in raw:
                if value in owner:
                    raise DatasetError(f"dataset.label_groups: label {value} is in both '{owner[value]}' and '{name}'")
                owner[value], class_of_raw[value] = name, index
        names = list(groups)
        regions = {name: (index,) for index, name in enumerate(names) if index > 0}
        return cls(tuple(range(len(names))), class_of_raw, regions, groups)

    def to_classes(self, label: np.ndarray) -> np.ndarray:
        """Raw label map (any shape, validated values) -> class indices, uint8."""
        lut = np.zeros(max(self.class_of_raw) + 1, np.uint8)
        for raw, index in self.class_of_raw.items():
            lut[raw] = index
        return lut[label]

    def meta(self) -> dict:
        """The keys the slice store's meta.json records about labels."""
        out = {
            "label_values": list(self.class_values),
            "regions": {name: list(values) for name, values in self.regions.items()},
            "raw_label_values": self.raw_values,
        }
        if self.groups is not None:
            out["label_groups"] = {name: list(raw) for name, raw in self.groups.items()}
        return out


def _check_count(n_classes: int) -> None:
    if n_classes > MAX_CLASSES:
        raise DatasetError(f"dataset: {n_classes} classes, at most {MAX_CLASSES} are supported (stored as uint8)")
