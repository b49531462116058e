"""Tests for maxmicro.detection.targets on hand-worked windows."""

import functools

import jax
import numpy as np
import pytest

from maxmicro.detection import targets as targets_lib
from maxmicro.models import detector

# 16 steps, 3 levels: points 0..15 (stride 1), 0, 2, ..., 14 (stride 2) and
# 0, 4, 8, 12 (stride 4); level i takes instances of [0, 4), [4, 8), [8, inf)
# steps.
POINTS = detector.point_grid(16, 3, regression_ranges=(
    (0, 4), (4, 8), (8, np.inf)))
LEVEL0, LEVEL1, LEVEL2 = slice(0, 16), slice(16, 24), slice(24, 28)


def assign(instances, num_classes=3, max_instances=4, **kwargs):
  """Targets of `instances`, (label, start, end) rows padded to a fixed K."""
  segments = np.zeros((max_instances, 2), np.float32)
  labels = np.full(max_instances, -1, np.int32)
  for index, (label, start, end) in enumerate(instances):
    segments[index] = start, end
    labels[index] = label
  assign_fn = jax.jit(functools.partial(
      targets_lib.assign_targets, POINTS, num_classes=num_classes, **kwargs))
  targets = assign_fn(segments, labels, labels >= 0)
  return {key: np.asarray(value) for key, value in targets.items()}


def positive_points(targets, level):
  return np.flatnonzero(targets['positive'][level])


def test_centre_sampling_keeps_points_strictly_inside_the_centre_region():
  # Instance [2, 5): centre 3.5, radius 1.5 -> region (2, 5); points 3 and 4.
  targets = assign([(1, 2, 5)])
  np.testing.assert_array_equal(positive_points(targets, LEVEL0), [3, 4])
  assert not targets['positive'][16:].any()  # Length 3: level 0 only.
  np.testing.assert_array_equal(targets['regression'][[3, 4]],
                                [[1, 2], [2, 1]])
  np.testing.assert_array_equal(targets['classes'][[3, 4]], [[0, 1, 0]] * 2)
  assert not targets['classes'][targets['positive'] == 0].any()
  assert not targets['regression'][targets['positive'] == 0].any()


def test_radius_in_strides_and_regression_in_strides():
  # Length 16 -> level 2 (stride 4). Radius 1.5 strides = 6 steps around the
  # centre 8: region (2, 14) -> points 4, 8, 12; radius 0.5: only 8; no
  # radius: the whole instance (0, 16), where 0 is on the edge.
  wide = assign([(2, 0, 16)])
  np.testing.assert_array_equal(positive_points(wide, LEVEL2), [1, 2, 3])
  np.testing.assert_array_equal(wide['regression'][LEVEL2][1:],
                                [[1, 3], [2, 2], [3, 1]])
  narrow = assign([(2, 0, 16)], center_sample_radius=0.5)
  np.testing.assert_array_equal(positive_points(narrow, LEVEL2), [2])
  everywhere = assign([(2, 0, 16)], center_sample_radius=None)
  np.testing.assert_array_equal(positive_points(everywhere, LEVEL2), [1, 2, 3])
  assert positive_points(everywhere, LEVEL0).size == 0


@pytest.mark.parametrize('length,level', [(3.5, 0), (4, 1), (7.5, 1), (8, 2)])
def test_each_instance_goes_to_the_level_of_its_length(length, level):
  targets = assign([(0, 8 - length / 2, 8 + length / 2)])
  levels = np.repeat([0, 1, 2], [16, 8, 4])
  assert set(levels[targets['positive']]) == {level}


def test_overlapping_instances_give_multi_hot_points_and_the_shortest_extent():
  # Class 0 on [2, 5) (length 3) and class 1 on [3, 6.5) (length 3.5): point
  # 4 is in both centre regions; it learns both classes and the extent of
  # the shorter instance.
  targets = assign([(1, 3, 6.5), (0, 2, 5)])
  np.testing.assert_array_equal(positive_points(targets, LEVEL0), [3, 4, 5, 6])
  np.testing.assert_array_equal(targets['classes'][3:7, :2],
                                [[1, 0], [1, 1], [0, 1], [0, 1]])
  np.testing.assert_array_equal(targets['regression'][4], [2, 1])
  np.testing.assert_array_equal(targets['regression'][5], [2, 1.5])


def test_two_instances_of_one_class_make_a_target_of_one():
  targets = assign([(2, 2, 5), (2, 3, 5.5)])
  assert targets['classes'].max() == 1.0
  np.testing.assert_array_equal(targets['classes'][4], [0, 0, 1])


def test_padding_rows_and_no_instances_give_no_positives():
  segments = np.array([[2, 5], [0, 16]], np.float32)
  labels = np.array([1, 2], np.int32)
  valid = np.array([True, False])
  targets = targets_lib.assign_targets(POINTS, segments, labels, valid,
                                       num_classes=3)
  np.testing.assert_array_equal(np.flatnonzero(targets['positive']), [3, 4])
  empty = assign([])
  assert not empty['positive'].any() and not empty['classes'].any()
  assert empty['classes'].shape == (28, 3)
  assert empty['regression'].shape == (28, 2)
