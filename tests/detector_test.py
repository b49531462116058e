"""Tests for maxmicro.models.detector, and the detection core end to end."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from maxmicro.detection import losses
from maxmicro.detection import postprocess
from maxmicro.detection import targets as targets_lib
from maxmicro.models import detector
from tests.tiny_run import fast_compile  # pylint: disable=unused-import

pytestmark = pytest.mark.usefixtures('fast_compile')


def init_and_apply(model, features, mask=None):
  """`(outputs, variables)`, one compilation for both."""
  return jax.jit(model.init_with_output)(jax.random.key(0), features, mask)


def abstract_init_and_apply(model, shape, dtype=jnp.float32):
  """Shapes and dtypes only: no compilation, so cheap to call often."""
  return jax.eval_shape(
      lambda features: model.init_with_output(jax.random.key(0), features),
      jax.ShapeDtypeStruct(shape, dtype))


def count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('length,num_levels', [(16, 3), (13, 3), (9, 4)])
def test_outputs_cover_every_point_of_the_grid(length, num_levels):
  model = detector.TinyTemporalDetector(num_classes=5, num_levels=num_levels)
  outputs, _ = abstract_init_and_apply(model, (2, length, 8))
  points = model.points(length)
  lengths = detector.level_lengths(length, num_levels)
  assert lengths == tuple(-(-length // 2**i) for i in range(num_levels))
  num_points = sum(lengths)
  assert outputs['cls_logits'].shape == (2, num_points, 5)
  assert outputs['regression'].shape == (2, num_points, 2)
  assert outputs['mask'].shape == (2, num_points)
  assert points.centres.shape == points.strides.shape == (num_points,)
  assert points.ranges.shape == (num_points, 2)
  # Level 1 of the grid: every other step, stride 2.
  level1 = slice(lengths[0], lengths[0] + lengths[1])
  np.testing.assert_array_equal(points.centres[level1],
                                2 * np.arange(lengths[1]))
  np.testing.assert_array_equal(points.strides[level1], 2)


def test_default_ranges_give_each_level_four_to_eight_points():
  assert detector.default_regression_ranges(3) == (
      (0.0, 8.0), (8.0, 16.0), (16.0, np.inf))
  points = detector.point_grid(8, 2, regression_ranges=((0, 5), (5, 99)))
  np.testing.assert_array_equal(points.ranges[-1], (5, 99))
  with pytest.raises(ValueError, match='2 regression ranges for 3 levels'):
    detector.point_grid(8, 3, regression_ranges=((0, 5), (5, 99)))


def test_heads_are_shared_across_levels():
  params = {levels: abstract_init_and_apply(
      detector.TinyTemporalDetector(num_levels=levels), (1, 16, 8))[1]['params']
            for levels in (2, 3)}
  for head in ('cls_conv0', 'cls_logits', 'reg_conv0', 'regression'):
    assert count(params[2][head]) == count(params[3][head])
  assert {'projection', 'level0', 'downsample2', 'level2'} <= set(params[3])
  assert params[3]['regression_scale']['scale'].shape == (3,)
  assert params[3]['cls_logits']['kernel'].shape == (3, 16, 52)


def test_bfloat16_compute_gives_float32_outputs_and_parameters():
  model = detector.TinyTemporalDetector(dtype=jnp.bfloat16)
  outputs, variables = abstract_init_and_apply(model, (1, 8, 4))
  assert outputs['cls_logits'].dtype == outputs['regression'].dtype == (
      jnp.float32)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {
      jnp.dtype(jnp.float32)}
  with pytest.raises(ValueError, match='must be odd'):
    abstract_init_and_apply(detector.TinyTemporalDetector(kernel_size=4),
                            (1, 8, 4))


def test_scores_start_at_the_prior():
  features = jax.random.normal(jax.random.key(1), (2, 32, 8))
  outputs, variables = init_and_apply(
      detector.TinyTemporalDetector(num_classes=7), features)
  # log(0.01 / 0.99) stored in float32: half an ulp (6e-8 relative).
  np.testing.assert_allclose(variables['params']['cls_logits']['bias'],
                             np.log(0.01 / 0.99), rtol=1e-6)
  probabilities = jax.nn.sigmoid(outputs['cls_logits'])
  # The mean of sigmoids of random features around the prior: a statistical
  # bound (10%), not rounding.
  np.testing.assert_allclose(probabilities.mean(), 0.01, rtol=0.1)
  assert np.all(np.asarray(outputs['regression']) >= 0)
  assert outputs['mask'].all()


def test_padding_changes_nothing_at_valid_points():
  # A 10-step window padded to 16 scores as the bare 10 steps: convolutions
  # see zeros past the end either way, LayerNorm is per step and attention
  # masks the padded keys. (With attention, every kind of layer is checked.)
  model = detector.TinyTemporalDetector(num_classes=4, attention_window=5)
  features = jax.random.normal(jax.random.key(2), (2, 16, 8))
  mask = jnp.arange(16)[None] < 10
  # The second window's padding holds garbage.
  features = features.at[1].set(features[0].at[10:].set(100.0))
  padded, variables = init_and_apply(model, features, jnp.tile(mask, (2, 1)))
  bare = jax.jit(model.apply)(variables, features[:1, :10])
  valid = np.asarray(padded['mask'][0])
  assert valid.sum() == sum(detector.level_lengths(10, 3))
  for key in ('cls_logits', 'regression'):
    # Padding changes the sums' lengths and XLA's tiling: float32 rounding of
    # short convolutions and LayerNorms over a few layers, well under 1e-5.
    np.testing.assert_allclose(padded[key][0, valid], bare[key][0],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(padded[key][1], padded[key][0], rtol=1e-5,
                               atol=1e-5)
  assert not np.any(padded['regression'][0, ~valid])


# Overlapping instances (class, start step, end step) of four windows; class
# k raises feature channel k over its spans.
LENGTH = 64
SPANS = (
    ((0, 4, 20), (1, 12, 34), (2, 30, 46), (0, 44, 60)),
    ((1, 2, 14), (2, 8, 30), (0, 26, 50), (1, 40, 58)),
    ((2, 6, 24), (0, 16, 28), (1, 30, 54)),
    ((0, 10, 34), (2, 20, 38), (1, 36, 48), (2, 48, 62)),
)


def synthetic_windows(max_instances=4, num_channels=6):
  features = np.random.default_rng(0).normal(
      scale=0.1, size=(len(SPANS), LENGTH, num_channels)).astype(np.float32)
  segments = np.zeros((len(SPANS), max_instances, 2), np.float32)
  labels = np.full((len(SPANS), max_instances), -1, np.int32)
  for window, spans in enumerate(SPANS):
    for index, (label, start, end) in enumerate(spans):
      features[window, start:end, label] += 1.0
      segments[window, index] = start, end
      labels[window, index] = label
  return features, segments, labels, labels >= 0


def tiou(first, second):
  intersection = max(0.0, min(first[1], second[1]) - max(first[0], second[0]))
  return intersection / (max(first[1], second[1]) - min(first[0], second[0]))


def test_overfits_overlapping_synthetic_actions():
  features, segments, labels, valid = synthetic_windows()
  model = detector.TinyTemporalDetector(num_classes=3, width=32)
  points = model.points(LENGTH)
  targets = jax.vmap(functools.partial(
      targets_lib.assign_targets, points, num_classes=3))(
          segments, labels, valid)
  params = jax.jit(model.init)(jax.random.key(0), features)['params']
  optimizer = optax.adam(1e-2)

  @jax.jit
  def train_step(params, optimizer_state):
    def loss_fn(params):
      outputs = model.apply({'params': params}, features)
      return losses.detection_loss(outputs, targets)[0], outputs
    (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, optimizer_state = optimizer.update(grads, optimizer_state)
    return optax.apply_updates(params, updates), optimizer_state, loss, outputs

  optimizer_state = optimizer.init(params)
  for _ in range(200):
    params, optimizer_state, loss, outputs = train_step(params,
                                                        optimizer_state)
  assert loss < 0.1

  # The outputs of the last step, one update behind: no apply to compile.
  scores = np.asarray(jax.nn.sigmoid(outputs['cls_logits']))
  regression = np.asarray(outputs['regression'])
  seconds_per_step = 2 / 30  # Every other frame at 30 fps.
  for window, spans in enumerate(SPANS):
    rows = postprocess.decode_video(
        scores[window], regression[window], points,
        seconds_per_step=seconds_per_step,
        duration=LENGTH * seconds_per_step)
    for label, start, end in spans:
      truth = (start * seconds_per_step, end * seconds_per_step)
      confident = [tiou(truth, row[1:3]) for row in rows
                   if row[0] == label and row[3] > 0.3]
      assert max(confident, default=0.0) > 0.7, (window, label, start, rows)
    # No confident false alarm. A point inside instances of two classes
    # learns both classes but the shorter one's extent, so the longer class
    # may score there with the wrong ends (tIoU about 0.5 in window 3), never
    # far from an instance of its own class.
    for label, start, end, score in rows:
      if score > 0.3:
        assert max(tiou((span_start * seconds_per_step,
                         span_end * seconds_per_step), (start, end))
                   for span_label, span_start, span_end in spans
                   if span_label == label) > 0.3
