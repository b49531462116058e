"""The video-transformer recipe's augmentations: crops, colour, erasing,
batch mixing (mmaction2 1.x's definitions, `maxmicro/data/transforms.py`
and `maxmicro/batch_mixing.py`)."""

import copy

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import videomae
from maxmicro import batch_mixing
from maxmicro import config_checks
from maxmicro import losses
from maxmicro import tasks
from maxmicro.data import pipeline
from maxmicro.data import transforms


def test_random_resized_boxes_keep_to_their_area_and_aspect():
  rng = np.random.default_rng(0)
  for _ in range(200):
    top, left, height, width = transforms.random_resized_crop_box(
        256, 320, rng, (0.3, 1.0), (3 / 4, 4 / 3))
    assert 0 <= top and top + height <= 256 and 0 <= left
    assert left + width <= 320
    # Sides are rounded to whole pixels: a pixel of slack on each.
    assert 0.3 * 256 * 320 * 0.98 <= height * width <= 256 * 320
    assert 3 / 4 * 0.98 <= width / height <= 4 / 3 * 1.02


def test_random_resized_falls_back_to_the_centred_square():
  # An aspect of 10 at the full area never fits a 4:5 frame.
  box = transforms.random_resized_crop_box(
      100, 80, np.random.default_rng(0), (1.0, 1.0), (10.0, 10.0))
  assert box == (10, 0, 80, 80)


def _clip(seed=0, frames=3):
  frame = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), np.uint8)
  return np.stack([frame] * frames)


def test_color_jitter_is_one_draw_for_the_clip_and_off_at_zero():
  clip = _clip()
  jittered = transforms.color_jitter(clip, np.random.default_rng(1),
                                     0.5, 0.5, 0.5, 0.1)
  assert jittered.dtype == np.uint8 and not np.array_equal(jittered, clip)
  for other in jittered[1:]:
    np.testing.assert_array_equal(other, jittered[0])
  np.testing.assert_array_equal(
      transforms.color_jitter(clip, np.random.default_rng(1), 0, 0, 0, 0),
      clip)


def test_brightness_alone_scales_the_pixels():
  clip = _clip()
  rng = np.random.default_rng(2)
  factor = copy.deepcopy(rng).uniform(0.5, 1.5)
  jittered = transforms.color_jitter(clip, rng, 0.5, 0.0, 0.0, 0.0)
  # One float32 product per pixel, then truncation to uint8 as mmaction2.
  expected = np.clip(clip.astype(np.float32) * factor, 0, 255).astype(
      np.uint8)
  np.testing.assert_array_equal(jittered, expected)


def test_hue_shifts_opencv_hue_by_a_whole_step():
  # Pure colours, whose hue OpenCV's 8-bit HSV holds exactly.
  clip = np.zeros((1, 2, 2, 3), np.uint8)
  clip[0, :, :, 0] = 255  # Red: hue 0.
  shifted = transforms._shift_hue(clip.astype(np.float32), 60)
  expected = cv2.cvtColor(np.array([[[60, 255, 255]]], np.uint8),
                          cv2.COLOR_HSV2RGB)  # Hue 60 of 180: cyan.
  np.testing.assert_array_equal(shifted[0, 0, 0], expected[0, 0])
  # Negative shifts wrap around the 180 steps.
  back = transforms._shift_hue(shifted.astype(np.float32), -60)
  np.testing.assert_array_equal(back, clip)


def test_random_erase_fills_one_box_in_every_frame():
  clip = np.zeros((4, 64, 64, 3), np.uint8)
  for seed in range(50):
    erased = transforms.random_erase(clip, np.random.default_rng(seed), 1.0,
                                     (0.02, 0.2))
    box = erased[0, :, :, 0] == 128
    for frame in erased:
      np.testing.assert_array_equal(frame[:, :, 0] == 128, box)
    rows, cols = np.nonzero(box)
    assert box.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # A box.
    # Rounded sides: the area is within a pixel per side of the range.
    assert 0.02 * 64 * 64 * 0.8 <= box.sum() <= 0.2 * 64 * 64 * 1.2
  np.testing.assert_array_equal(
      transforms.random_erase(clip, np.random.default_rng(0), 0.0), clip)


def test_the_vit_recipe_runs_in_the_train_pipeline():
  config = videomae.get_config('tiny')
  element = {'jpegs': [cv2.imencode('.jpg', frame)[1].tobytes()
                       for frame in _clip(frames=8)[..., ::-1]],
             'label': 3, 'body_label': 0}
  crops = pipeline.TrainClip(config.data, 4)
  videos = [crops.random_map(element, np.random.default_rng(seed))['video']
            for seed in range(4)]
  assert videos[0].shape == (4, 32, 32, 3)
  assert len({v.tobytes() for v in videos}) == 4


def test_mixup_blends_clips_and_cutmix_pastes_one_box():
  video = jax.random.normal(jax.random.key(0), (6, 2, 8, 8, 3))
  mixed, partner, lam = batch_mixing.mix(video, jax.random.key(1), 0.8, 0.0)
  np.testing.assert_allclose(mixed, lam * video + (1 - lam) * video[partner],
                             rtol=1e-6, atol=1e-6)  # The same float32 ops.
  assert sorted(np.asarray(partner)) == list(range(6))
  mixed, partner, lam = batch_mixing.mix(video, jax.random.key(2), 0.0, 1.0)
  from_partner = np.asarray(mixed != video).any(axis=(0, 1, 4))
  # The box's share of the frame is exactly 1 - lam (whole pixels).
  assert from_partner.sum() / 64 == pytest.approx(1 - float(lam))
  kept = np.asarray(mixed)[:, :, ~from_partner]
  np.testing.assert_array_equal(kept, np.asarray(video)[:, :, ~from_partner])


def test_mixed_loss_is_the_cross_entropy_of_the_soft_labels():
  logits = jax.random.normal(jax.random.key(0), (6, 52))
  labels = jnp.arange(6)
  partner = jnp.array([3, 4, 5, 0, 1, 2])
  lam = 0.3
  config = videomae.get_config('tiny').loss
  loss_a, _ = losses.compute_loss({'action_logits': logits}, labels, None,
                                  config)
  loss_b, _ = losses.compute_loss({'action_logits': logits}, labels[partner],
                                  None, config)
  soft = (lam * jax.nn.one_hot(labels, 52) +
          (1 - lam) * jax.nn.one_hot(labels[partner], 52))
  # Linear in the targets: equal up to float32 rounding of a few sums.
  assert float(lam * loss_a + (1 - lam) * loss_b) == pytest.approx(
      float(optax.softmax_cross_entropy(logits, soft).mean()), rel=1e-6)


@pytest.mark.parametrize('field, value, message', [
    ('train_crop', 'center', 'data.train_crop'),
    ('crop_area_range', (0.5, 0.3), 'crop_area_range'),
    ('color_jitter', (0.5, 0.5, 0.5, 0.7), 'color_jitter'),
    ('erase_probability', 1.5, 'erase_probability'),
    ('mixup_alpha', -1.0, 'mixup_alpha'),
])
def test_bad_augmentation_values_are_named(field, value, message):
  config = videomae.get_config('tiny')
  config.data[field] = value
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config, training=False)


def test_the_recognition_loss_mixes_when_asked():
  config = videomae.get_config('tiny')
  config.model.dropout_rate = 0.0
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (4, 4, 32, 32, 3), np.uint8),
           'label': np.arange(4, dtype=np.int32)}

  def loss(mixup_alpha, cutmix_alpha):
    config.data.mixup_alpha, config.data.cutmix_alpha = (mixup_alpha,
                                                         cutmix_alpha)
    task = tasks.get_task(config)
    params = {'model': task.model.init(
        jax.random.key(0), jnp.zeros((1, 4, 32, 32, 3)))['params']}
    return float(task.loss_fn()(params, {}, batch, jax.random.key(1))[0])
  plain = loss(0.0, 0.0)
  assert np.isfinite(loss(0.8, 1.0)) and loss(0.8, 0.0) != plain
  assert loss(0.0, 1.0) != plain
