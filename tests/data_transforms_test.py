"""Frame sampling and augmentation against their definitions (DESIGN.md)."""

import itertools

import ml_collections
import numpy as np
import pytest

from maxmicro.data import transforms


class ScriptedRng:
  """Stands in for np.random.Generator with scripted integer draws."""

  def __init__(self, integers=(), randoms=()):
    self._integers = list(integers)
    self._randoms = list(randoms)

  def integers(self, high, size=None):
    if size is None:
      value = self._integers.pop(0)
      assert 0 <= value < high
      return value
    values = np.asarray([self._integers.pop(0) for _ in range(size)])
    assert ((0 <= values) & (values < high)).all()
    return values

  def random(self):
    return self._randoms.pop(0)


@pytest.mark.parametrize('num_frames', [64, 45, 75, 17, 8, 10, 5, 1])
def test_sample_train_indices_follows_definition(num_frames):
  rng = np.random.default_rng(num_frames)
  for _ in range(50):
    indices = transforms.sample_train_indices(num_frames, 8, rng)
    assert indices.shape == (8,)
    assert ((0 <= indices) & (indices < num_frames)).all()
    average = num_frames // 8
    if average > 0:  # One frame in each segment [k*avg, (k+1)*avg).
      np.testing.assert_array_equal(indices // average, np.arange(8))
    elif num_frames > 8:
      assert (np.diff(indices) >= 0).all()
    else:  # around(arange(T) * n / T) mod n, no randomness.
      np.testing.assert_array_equal(
          indices, np.around(np.arange(8) * num_frames / 8) % num_frames)


def test_sample_train_indices_hand_worked():
  # n=20, T=4: avg 5, offsets scripted as 0, 4, 2, 1.
  rng = ScriptedRng(integers=[0, 4, 2, 1])
  np.testing.assert_array_equal(
      transforms.sample_train_indices(20, 4, rng), [0, 9, 12, 16])
  # n=6, T=4: avg 1 -> every offset 0: [0, 1, 2, 3].
  rng = ScriptedRng(integers=[0, 0, 0, 0])
  np.testing.assert_array_equal(
      transforms.sample_train_indices(6, 4, rng), [0, 1, 2, 3])
  # n=6, T=8: avg 0, n <= T: around(arange(8) * 6 / 8).
  np.testing.assert_array_equal(
      transforms.sample_train_indices(6, 8, None), [0, 1, 2, 2, 3, 4, 4, 5])
  # n=9, T=16: avg 0, n < T: no draws.
  np.testing.assert_array_equal(
      transforms.sample_train_indices(9, 16, None),
      np.around(np.arange(16) * 9 / 16))


def test_sample_train_indices_one_frame_per_segment_when_avg_is_one():
  # n = T + 1: avg 1, so every offset is 0 (the sorted-random branch needs
  # n > T with n // T == 0, which one-frame clips never reach).
  rng = np.random.default_rng(0)
  indices = transforms.sample_train_indices(9, 8, rng)
  np.testing.assert_array_equal(indices, np.arange(8))


def test_sample_test_indices_hand_worked():
  # n=64, T=8: avg 8, int(arange(8)*8 + 4).
  np.testing.assert_array_equal(transforms.sample_test_indices(64, 8),
                                [4, 12, 20, 28, 36, 44, 52, 60])
  # n=45: avg 5.625: int(k*5.625 + 2.8125).
  expected = [int(k * 45 / 8 + 45 / 16) for k in range(8)]
  np.testing.assert_array_equal(transforms.sample_test_indices(45, 8),
                                expected)
  assert expected == [2, 8, 14, 19, 25, 30, 36, 42]
  # Two clips: offsets avg/4 and 3avg/4, consecutive.
  np.testing.assert_array_equal(transforms.sample_test_indices(16, 4, 2),
                                [1, 5, 9, 13, 3, 7, 11, 15])
  # Fewer frames than segments: repeats, stays in range.
  np.testing.assert_array_equal(transforms.sample_test_indices(3, 8),
                                [0, 0, 0, 1, 1, 2, 2, 2])


def test_dense_test_clips_hand_worked():
  """mmaction2 1.x SampleFrames(clip_len=32, frame_interval=2) in test mode."""
  # 100 frames: 36 left after a 64-frame span; one clip starts at 36 // 2.
  np.testing.assert_array_equal(
      transforms.sample_test_indices(100, 32, frame_interval=2),
      np.arange(18, 82, 2))
  # Four clips start at round(c * 36 / 3): 0, 12, 24, 36, consecutive.
  four = transforms.sample_test_indices(100, 32, 4, frame_interval=2)
  np.testing.assert_array_equal(four.reshape(4, 32)[:, 0], [0, 12, 24, 36])
  np.testing.assert_array_equal(np.diff(four.reshape(4, 32)), 2)
  # 40 frames, shorter than the span: from 0, wrapped around (loop).
  np.testing.assert_array_equal(
      transforms.sample_test_indices(40, 32, frame_interval=2),
      np.arange(0, 64, 2) % 40)


def test_dense_train_clip_starts_anywhere_the_span_fits():
  rng = np.random.default_rng(0)
  starts = set()
  for _ in range(400):
    indices = transforms.sample_train_indices(100, 32, rng, frame_interval=2)
    np.testing.assert_array_equal(np.diff(indices), 2)
    starts.add(int(indices[0]))
  # randint(100 - 64 + 1): every start 0..36, none later.
  assert starts == set(range(37))
  # A video shorter than the span: from 0, wrapped around.
  np.testing.assert_array_equal(
      transforms.sample_train_indices(50, 32, rng, frame_interval=2),
      np.arange(0, 64, 2) % 50)


def _definition_boxes(height, width, image_size, scales, max_distort):
  """Every (top, left, h, w) MultiScaleCrop can produce, from DESIGN.md."""
  base = min(height, width)
  sizes = [int(base * s) for s in scales]
  snap = lambda size: image_size if abs(size - image_size) < 3 else size
  steps = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4),
           (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
  boxes = set()
  for i, j in itertools.product(range(len(sizes)), repeat=2):
    if abs(i - j) > max_distort:
      continue
    crop_h, crop_w = snap(sizes[i]), snap(sizes[j])
    w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
    for x, y in steps:
      boxes.add((y * h_step, x * w_step, crop_h, crop_w))
  return boxes


@pytest.mark.parametrize('height,width', [(307, 256), (256, 341), (43, 36)])
def test_multi_scale_crop_box_covers_exactly_the_definition(height, width):
  image_size = 224 if min(height, width) == 256 else 32
  scales = (1.0, 0.875, 0.75, 0.66)
  expected = _definition_boxes(height, width, image_size, scales, 1)
  rng = np.random.default_rng(0)
  drawn = {transforms.multi_scale_crop_box(height, width, rng, image_size,
                                           scales, 1) for _ in range(4000)}
  assert drawn == expected
  for top, left, crop_h, crop_w in drawn:
    assert top + crop_h <= height and left + crop_w <= width


def test_multi_scale_crop_box_hand_worked():
  # 307 high x 256 wide: sizes [256, 224, 192, 168]. Candidates (w, h) in
  # order (i: h index, j: w index, |i-j| <= 1): (256,256) (224,256)
  # (256,224) (224,224) (192,224) (224,192) (192,192) (168,192) (192,168)
  # (168,168). Draw 3 -> (224, 224); offset draw 1 -> steps (4, 0).
  rng = ScriptedRng(integers=[3, 1])
  box = transforms.multi_scale_crop_box(307, 256, rng, 224)
  assert box == (0, 4 * ((256 - 224) // 4), 224, 224)
  # Draw 7 -> (w=168, h=192); offset 12 -> (3, 3): w_step 22, h_step 28.
  rng = ScriptedRng(integers=[7, 12])
  assert transforms.multi_scale_crop_box(307, 256, rng, 224) == (
      3 * 28, 3 * 22, 192, 168)
  # Snapping: base 258 -> int(258*.875) = 225, within 3 of 224 -> 224; 258
  # itself is not (|258 - 224| >= 3).
  rng = ScriptedRng(integers=[1, 4])  # (w=225->224, h=258), centre.
  assert transforms.multi_scale_crop_box(300, 258, rng, 224) == (
      2 * ((300 - 258) // 4), 2 * ((258 - 224) // 4), 258, 224)


def test_resize_short_side_rounds_like_mmcv():
  frames = np.zeros((2, 1296, 1080, 3), np.uint8)
  assert transforms.resize_short_side(frames, 256).shape == (2, 307, 256, 3)
  frames = np.zeros((1, 272, 640, 3), np.uint8)
  # 640 * 64/272 = 150.59 -> 151.
  assert transforms.resize_short_side(frames, 64).shape == (1, 64, 151, 3)
  same = np.zeros((1, 40, 36, 3), np.uint8)
  assert transforms.resize_short_side(same, 36) is same


def test_center_crop_and_flip():
  frames = np.arange(2 * 7 * 6 * 3, dtype=np.uint8).reshape(2, 7, 6, 3)
  # mmaction2 CenterCrop: top (7-4)//2 = 1, left (6-4)//2 = 1.
  np.testing.assert_array_equal(transforms.center_crop(frames, 4),
                                frames[:, 1:5, 1:5])
  assert transforms.center_crop_box(307, 256, 224) == (41, 16, 224, 224)
  np.testing.assert_array_equal(transforms.flip(frames)[:, :, 0],
                                frames[:, :, -1])


def test_augment_train_clip_one_draw_for_the_whole_clip():
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 255, size=(48, 40, 3), dtype=np.uint8)
  frames = np.stack([frame] * 4)
  for seed in range(20):
    clip = transforms.augment_train_clip(
        frames, np.random.default_rng(seed), image_size=32,
        resize_short_side_to=36, scales=(1.0, 0.875, 0.75, 0.66),
        max_distort=1, flip_probability=0.5)
    assert clip.shape == (4, 32, 32, 3) and clip.dtype == np.uint8
    # Equal frames through the same cv2 resize on this machine: bit for bit.
    for other in clip[1:]:  # Same crop and flip on every frame.
      np.testing.assert_array_equal(other, clip[0])


def test_augment_train_clip_matches_the_steps():
  rng = np.random.default_rng(3)
  frames = rng.integers(0, 255, size=(2, 96, 80, 3), dtype=np.uint8)
  # Resized to (43, 36); base 36: sizes [36, 31, 27, 23]; size draw 3 ->
  # (w=31, h=31), both snapped to 32; offset draw 0; flip (0.2 < 0.5).
  scripted = ScriptedRng(integers=[3, 0], randoms=[0.2])
  clip = transforms.augment_train_clip(
      frames, scripted, image_size=32, resize_short_side_to=36,
      scales=(1.0, 0.875, 0.75, 0.66), max_distort=1, flip_probability=0.5)
  resized = transforms.resize_short_side(frames, 36)  # (2, 43, 36, 3)
  # The same cv2 resize of the same frames, then slices: bit for bit.
  np.testing.assert_array_equal(clip, resized[:, :32, :32][:, :, ::-1])


def test_preprocess_eval_clip():
  config = ml_collections.ConfigDict(dict(
      eval_num_clips=2, image_size=32, resize_short_side=36,
      frame_interval=None))
  frames = np.random.default_rng(0).integers(
      0, 255, size=(20, 96, 80, 3), dtype=np.uint8)
  clip = transforms.preprocess_eval_clip(frames, 4, config)
  assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
  indices = transforms.sample_test_indices(20, 4, 2)
  expected = transforms.center_crop(
      transforms.resize_short_side(frames[indices], 36), 32)
  # The same cv2 resize of the same frames, then slices: bit for bit.
  np.testing.assert_array_equal(clip, expected)
