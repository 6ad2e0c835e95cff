"""The batch augmentation: seeded, label-safe, and each transform does what its name says."""
import numpy as np
import pytest
import torch

from slicepick.training import AUGMENT_DEFAULTS, BatchAugment, build_augmentation


def _batch(n=8, h=32, w=32):
    images = torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 4, (n, 1, h, w), generator=torch.Generator().manual_seed(1)).float()
    return images, labels


def _apply(cfg, seed=3):
    images, labels = _batch()
    return BatchAugment(cfg)(images, labels, torch.Generator().manual_seed(seed))


def test_same_seed_same_batch_other_seed_differs():
    a, b, c = _apply({}, 3), _apply({}, 3), _apply({}, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_labels_stay_class_indices_under_elastic_deformation():
    _, labels = _apply({"elastic_prob": 1.0, "elastic_magnitude": [3, 4]})
    assert set(torch.unique(labels).tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_flip_only_is_an_exact_flip_of_image_and_label():
    images, labels = _batch()
    cfg = {"flip_prob": 1.0, "intensity_prob": 0.0, "elastic_prob": 0.0}
    out_images, out_labels = BatchAugment(cfg)(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(out_images, images.flip(2).flip(3)) and torch.equal(out_labels, labels.flip(2).flip(3))


def test_intensity_only_scales_and_shifts_within_bounds_and_leaves_labels():
    images, labels = _batch()
    cfg = {"flip_prob": 0.0, "intensity_prob": 1.0, "intensity_scale": 0.1, "intensity_shift": 0.2,
           "elastic_prob": 0.0}
    out_images, out_labels = BatchAugment(cfg)(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(out_labels, labels)
    # per sample: out = x * (1 + s) + o with |s| <= 0.1, |o| <= 0.2: recover s and o by least squares
    for x, y in zip(images, out_images):
        a, b = np.polyfit(x.flatten().numpy(), y.flatten().numpy(), 1)
        assert abs(a - 1) <= 0.1 + 1e-5 and abs(b) <= 0.2 + 1e-5


def test_nothing_drawn_means_identity():
    images, labels = _batch()
    cfg = {"flip_prob": 0.0, "intensity_prob": 0.0, "elastic_prob": 0.0}
    out_images, out_labels = BatchAugment(cfg)(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels)


def test_empty_config_means_the_defaults_on():
    augment = build_augmentation({})
    assert augment is not None and augment.cfg == AUGMENT_DEFAULTS


@pytest.mark.parametrize("cfg", [None, {"enabled": False}])
def test_none_or_enabled_false_is_off(cfg):
    assert build_augmentation(cfg) is None
