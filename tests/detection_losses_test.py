"""Tests for maxmicro.detection.losses."""

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro.detection import losses


def test_focal_loss_matches_the_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3, size=(4, 6)).astype(np.float32)
  targets = (rng.random((4, 6)) < 0.3).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = np.where(targets == 1, -0.25 * (1 - p)**2 * np.log(p),
                      -0.75 * p**2 * np.log(1 - p))
  # Float32 logs and exps against the float64 formula: a few ulps each, and
  # the products of small factors of confident logits (|x| ~ 9) lose a few more.
  np.testing.assert_allclose(losses.sigmoid_focal_loss(logits, targets),
                             expected, rtol=1e-4)
  # gamma 0 and alpha 0.5: half the binary cross-entropy.
  bce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
  np.testing.assert_allclose(
      losses.sigmoid_focal_loss(logits, targets, alpha=0.5, gamma=0.0),
      bce / 2, rtol=1e-4)


def test_diou_loss_on_hand_examples():
  # Perfect: 0. Predicted (1, 3) against (2, 2) around one point:
  # intersection 1 + 2 = 3, union 4 + 4 - 3 = 5, IoU 0.6; enclosing 2 + 3 =
  # 5; centres at +1 and 0 -> 1 - 0.6 + (1 / 5)**2 = 0.44.
  predicted = jnp.array([[2.0, 3.0], [1.0, 3.0], [0.0, 0.0]])
  target = jnp.array([[2.0, 3.0], [2.0, 2.0], [1.0, 1.0]])
  # 1 - 0.6 + 0.04 in float32: a few ulps (atol 1e-6).
  np.testing.assert_allclose(losses.diou_loss_1d(predicted, target),
                             [0.0, 0.44, 1.0], atol=1e-6)


def test_diou_gradient_is_finite_at_degenerate_intervals():
  predicted = jnp.zeros((3, 2))
  target = jnp.array([[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]])
  grad = jax.grad(lambda x: losses.diou_loss_1d(x, target).sum())(predicted)
  assert np.all(np.isfinite(grad))
  assert np.any(grad[1:] != 0)  # A collapsed prediction still learns.


def detector_batch():
  """A batch of 2 windows, 3 points, 2 classes, with a padded point."""
  outputs = {
      'cls_logits': jnp.array([[[2.0, -1.0], [0.5, 0.0], [9.0, 9.0]],
                               [[-3.0, 1.0], [0.0, 0.0], [1.0, -2.0]]]),
      'regression': jnp.array([[[1.0, 3.0], [1.0, 1.0], [5.0, 5.0]],
                               [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]]),
      'mask': jnp.array([[True, True, False], [True, True, True]]),
  }
  targets = {
      'classes': jnp.array([[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]],
                            [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]),
      'regression': jnp.array([[[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]],
                               [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]]),
      # The third point of window 0 is padding: its positive does not count.
      'positive': jnp.array([[True, False, True], [True, False, False]]),
  }
  return outputs, targets


def test_detection_loss_normalises_by_positive_points():
  outputs, targets = detector_batch()
  loss, parts = jax.jit(losses.detection_loss)(outputs, targets)
  focal = losses.sigmoid_focal_loss(outputs['cls_logits'],
                                    targets['classes'])
  mask = np.asarray(outputs['mask'])[..., None]
  # The same float32 terms summed in another order: 1e-6 relative.
  np.testing.assert_allclose(parts['cls_loss'],
                             np.sum(np.asarray(focal) * mask) / 2, rtol=1e-6)
  # Positives: window 0 point 0 (0.44) and window 1 point 0 (0).
  # 0.44 / 2 through float32 IoU arithmetic (a subtraction of near values):
  # a few ulps of 1, so 1e-5 relative of 0.22.
  np.testing.assert_allclose(parts['reg_loss'], 0.44 / 2, rtol=1e-5)
  # Sums of two float32 scalars: one rounding (1e-6).
  np.testing.assert_allclose(loss, parts['cls_loss'] + parts['reg_loss'],
                             rtol=1e-6)
  weighted, _ = losses.detection_loss(outputs, targets, regression_weight=2.0)
  np.testing.assert_allclose(weighted, loss + parts['reg_loss'], rtol=1e-6)


def test_no_positives_divide_by_one():
  outputs, targets = detector_batch()
  targets['positive'] = jnp.zeros_like(targets['positive'])
  targets['classes'] = jnp.zeros_like(targets['classes'])
  _, parts = losses.detection_loss(outputs, targets)
  focal = losses.sigmoid_focal_loss(outputs['cls_logits'], 0.0)
  # The same float32 terms summed in another order: 1e-6 relative.
  np.testing.assert_allclose(
      parts['cls_loss'],
      np.sum(np.asarray(focal) * np.asarray(outputs['mask'])[..., None]),
      rtol=1e-6)
  assert parts['reg_loss'] == 0.0


def test_gradients_are_finite_and_zero_at_padded_points():
  outputs, targets = detector_batch()

  @jax.jit
  def gradients(cls_logits, regression):
    return jax.grad(
        lambda predictions: losses.detection_loss(
            dict(outputs, **predictions), targets)[0])(
                {'cls_logits': cls_logits, 'regression': regression})
  grads = gradients(outputs['cls_logits'], outputs['regression'])
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
  assert not np.any(grads['cls_logits'][0, 2])
  assert not np.any(grads['regression'][0, 2])
  # Only positives learn distances, and collapsed predictions still do.
  assert not np.any(grads['regression'][:, 1])
  grads = gradients(outputs['cls_logits'], jnp.zeros((2, 3, 2)))
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
  assert np.all(grads['regression'][:, 0] < 0)  # Both ends should grow.
