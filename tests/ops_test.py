"""Tests for maxmicro.ops.temporal_shift."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxmicro import ops
from tests import cpu_devices


def reference_shift(x, num_segments, fold_div):
  """The shift as DESIGN.md states it, one frame and channel at a time."""
  frames, _, _, channels = x.shape
  fold = channels // fold_div
  out = np.zeros_like(x)
  for clip_start in range(0, frames, num_segments):
    for t in range(num_segments):
      frame = clip_start + t
      for c in range(channels):
        if c < fold:
          if t + 1 < num_segments:
            out[frame, ..., c] = x[frame + 1, ..., c]
        elif c < 2 * fold:
          if t > 0:
            out[frame, ..., c] = x[frame - 1, ..., c]
        else:
          out[frame, ..., c] = x[frame, ..., c]
  return out


def test_hand_worked_example():
  # One clip of 3 frames, 1x1 pixels, 4 channels, fold_div 4 -> fold 1.
  x = np.array([[1, 10, 100, 1000],
                [2, 20, 200, 2000],
                [3, 30, 300, 3000]], np.float32).reshape(3, 1, 1, 4)
  expected = np.array([[2, 0, 100, 1000],
                       [3, 10, 200, 2000],
                       [0, 20, 300, 3000]], np.float32).reshape(3, 1, 1, 4)
  np.testing.assert_array_equal(ops.temporal_shift(x, 3, fold_div=4),
                                expected)


@pytest.mark.parametrize('clips,num_segments,height,width,channels,fold_div', [
    (2, 8, 3, 2, 16, 8),
    (3, 4, 2, 2, 12, 4),
    (1, 8, 1, 3, 10, 3),  # fold = 3: channels not a multiple of fold_div.
    (2, 3, 2, 2, 7, 8),  # fold = 0: nothing moves.
    (1, 1, 2, 2, 8, 8),  # one segment: shifted channels are all zeros.
])
def test_matches_reference_loop(clips, num_segments, height, width, channels,
                                fold_div):
  x = np.random.default_rng(0).normal(
      size=(clips * num_segments, height, width, channels)).astype(np.float32)
  got = jax.jit(ops.temporal_shift, static_argnums=(1, 2))(
      x, num_segments, fold_div)
  # The shift moves values and writes zeros, computes none: exact.
  np.testing.assert_array_equal(got,
                                reference_shift(x, num_segments, fold_div))


def test_gradient_is_the_reverse_shift():
  num_segments, fold_div = 4, 4
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2 * num_segments, 2, 2, 8)).astype(np.float32)
  cotangent = rng.normal(size=x.shape).astype(np.float32)
  _, vjp = jax.vjp(lambda v: ops.temporal_shift(v, num_segments, fold_div), x)
  (grad,) = vjp(cotangent)
  # Reversing time turns the forward shift of [0:fold] into a backward one
  # and vice versa, so the adjoint is: swap the two folds' roles.
  fold = 8 // fold_div
  reverse = lambda v: v.reshape(2, num_segments, 2, 2, 8)[:, ::-1].reshape(  # noqa: E731
      v.shape)
  expected = np.array(cotangent)
  expected = reverse(reference_shift(reverse(expected), num_segments, fold_div))
  # A permutation of the cotangent: exact (the default rtol is 1e-7).
  np.testing.assert_allclose(grad, expected)
  # And directly: d out[t, :fold] / d x[t+1, :fold] = 1.
  clips = np.asarray(grad).reshape(2, num_segments, 2, 2, 8)
  cot = cotangent.reshape(2, num_segments, 2, 2, 8)
  np.testing.assert_array_equal(clips[:, 1:, ..., :fold],
                                cot[:, :-1, ..., :fold])
  np.testing.assert_array_equal(clips[:, 0, ..., :fold], 0)


def test_rejects_frames_not_a_multiple_of_segments():
  with pytest.raises(ValueError, match='num_segments=4'):
    ops.temporal_shift(jnp.zeros((6, 1, 1, 8)), 4)


def test_runs_sharded_over_an_8_device_mesh():
  output = cpu_devices.run_python("""
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from maxmicro import ops
      from tests.ops_test import reference_shift
      assert jax.device_count() == 8
      mesh = jax.make_mesh((8,), ('data',))
      batch = NamedSharding(mesh, P('data'))
      x = np.random.default_rng(0).normal(size=(16 * 8, 3, 3, 16))
      x = x.astype(np.float32)
      shift = jax.jit(lambda v: ops.temporal_shift(v, 8, 8),
                      in_shardings=batch, out_shardings=batch)
      y = shift(jax.device_put(x, batch))
      assert y.sharding == batch, y.sharding
      np.testing.assert_array_equal(y, reference_shift(x, 8, 8))
      grad = jax.jit(jax.grad(lambda v: (ops.temporal_shift(v, 8, 8) ** 2).sum()),
                     in_shardings=batch, out_shardings=batch)(
                         jax.device_put(x, batch))
      assert grad.sharding == batch
      print('ok', len(y.addressable_shards))
  """)
  assert 'ok 8' in output


# (kernel, strides, padding): I3D's stem, inflated and plain bottleneck
# convolutions, a strided 1x1x1 projection, and a temporal stride on a
# 3x3x3 kernel.
@pytest.mark.parametrize('kernel, strides, padding', [
    ((5, 7, 7), (2, 2, 2), ((2, 2), (3, 3), (3, 3))),
    ((3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0))),
    ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1))),
    ((1, 1, 1), (1, 2, 2), ((0, 0), (0, 0), (0, 0))),
    ((3, 3, 3), (2, 1, 1), ((1, 1), (1, 1), (1, 1))),
])
def test_conv3d_by_frames_is_the_3d_convolution(kernel, strides, padding):
  """Values and both gradients equal XLA's 3D convolution."""
  x_key, w_key, g_key = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(x_key, (2, 7, 9, 8, 3))
  w = jax.random.normal(w_key, kernel + (3, 5))
  dimensions = ('NDHWC', 'DHWIO', 'NDHWC')

  def apply(conv):
    return lambda x, w: conv(x, w, strides, padding,
                             dimension_numbers=dimensions)

  want, want_vjp = jax.vjp(apply(jax.lax.conv_general_dilated), x, w)
  got, got_vjp = jax.vjp(apply(ops.conv3d_by_frames), x, w)
  g = jax.random.normal(g_key, want.shape)
  # The same float32 products of unit normals, summed in another order:
  # sums of up to 735 terms (values up to ~100), a few ulps of that scale.
  for got_array, want_array in ((got, want),
                                *zip(jax.jit(got_vjp)(g), want_vjp(g))):
    scale = np.abs(want_array).max()
    np.testing.assert_allclose(got_array, want_array, rtol=1e-5,
                               atol=1e-5 * scale)
