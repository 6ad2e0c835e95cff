"""Dice and HD95 against values computed by hand on small masks, empty masks included."""
import numpy as np
import pytest

from slicepick.evaluation import dice_hd95, region_masks


def square(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def test_identical_masks():
    a = square((10, 10), slice(2, 5), slice(2, 5))
    assert dice_hd95(a, a, (1.0, 1.0)) == (1.0, 0.0)


def test_shifted_square_by_hand():
    # 3x3 squares overlapping in 3x2: Dice = 2*6 / (9 + 9) = 2/3
    a = square((10, 10), slice(2, 5), slice(2, 5))
    b = square((10, 10), slice(2, 5), slice(3, 6))
    dice, hd = dice_hd95(a, b, (1.0, 1.0))
    assert dice == pytest.approx(2 / 3)
    # every boundary point is at most one voxel from the other boundary; 95th percentile = 1 voxel
    assert hd == pytest.approx(1.0)
    # the shift is along the second axis: spacing there scales the distance (mm)
    assert dice_hd95(a, b, (1.0, 2.5))[1] == pytest.approx(2.5)


def test_far_apart_single_voxels_3d():
    a = np.zeros((5, 5, 5), bool)
    b = np.zeros((5, 5, 5), bool)
    a[0, 0, 0] = True
    b[3, 4, 0] = True
    dice, hd = dice_hd95(a, b, (1.0, 1.0, 2.0))
    assert dice == 0.0
    assert hd == pytest.approx(5.0)  # sqrt(3^2 + 4^2)


def test_empty_masks_follow_brats_convention():
    empty = np.zeros((4, 4, 4), bool)
    full = np.ones((4, 4, 4), bool)
    assert dice_hd95(empty, empty, (1, 1, 1)) == (1.0, 0.0)
    diagonal = np.sqrt(3 * 16.0)
    assert dice_hd95(full, empty, (1, 1, 1)) == (0.0, pytest.approx(diagonal))
    assert dice_hd95(empty, full, (1, 1, 1)) == (0.0, pytest.approx(diagonal))


def test_brats_regions_from_class_indices():
    classes = np.array([0, 1, 2, 3])  # indices of label values [0, 1, 2, 4]
    masks = region_masks(classes, {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}, [0, 1, 2, 4])
    assert masks["WT"].tolist() == [False, True, True, True]
    assert masks["TC"].tolist() == [False, True, False, True]
    assert masks["ET"].tolist() == [False, False, False, True]
