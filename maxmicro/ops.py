"""Functional building blocks shared by the models.

The temporal shift, input normalisation, and the XLA:CPU formulation of 1x1
convolutions (`conv_or_matmul`); what each formulation is worth is measured
in benchmarks/RESULTS.md.
"""

import functools

import jax
import jax.numpy as jnp

# ImageNet statistics on 0..255 RGB, as the official pipeline normalises.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def normalise(video):
  """uint8 RGB `(..., 3)` -> float32 `(x - mean) / std`, on the device."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return (video.astype(jnp.float32) - mean) / std


def temporal_shift(x, num_segments, fold_div=8):
  """Shifts a fraction of channels one step along time (TSM).

  Args:
    x: `(N*T, H, W, C)` frames, the `T = num_segments` frames of a clip
      consecutive.
    num_segments: T.
    fold_div: `fold = C // fold_div` channels move each way.

  Returns:
    An array like `x` in which channels `[0:fold]` at time t hold time t+1
    (zeros at the last step), channels `[fold:2*fold]` at time t hold time t-1
    (zeros at the first step) and the other channels are unchanged.
  """
  frames, height, width, channels = x.shape
  if frames % num_segments:
    raise ValueError(f'temporal_shift: {frames} frames is not a multiple of '
                     f'num_segments={num_segments}.')
  fold = channels // fold_div
  clips = x.reshape(frames // num_segments, num_segments, height, width,
                    channels)
  # Pads and slices rather than a roll: the ends must be zero-filled, and
  # static slices keep the op a cheap copy for XLA and its gradient the
  # reverse shift.
  no_pad = (0, 0)
  from_next = jnp.pad(clips[:, 1:, ..., :fold],
                      (no_pad, (0, 1), no_pad, no_pad, no_pad))
  from_previous = jnp.pad(clips[:, :-1, ..., fold:2 * fold],
                          (no_pad, (1, 0), no_pad, no_pad, no_pad))
  shifted = jnp.concatenate(
      [from_next, from_previous, clips[..., 2 * fold:]], axis=-1)
  return shifted.reshape(x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul_1x1(x, kernel, precision=None):
  """`x @ kernel` over channels, `(N, H, W, C) @ (C, D)`.

  The custom VJP only changes how the kernel gradient `x^T g` is laid out.
  Left to itself, XLA:CPU feeds that dot `g` transposed, fused into the
  single-threaded BatchNorm backward that produces `g`, even where `g` is
  the wider operand. Here the narrower operand is transposed, behind an
  optimization barrier so that XLA cannot fold the transpose back into the
  dot: the same numbers, faster.
  """
  return jnp.einsum('nhwc,cd->nhwd', x, kernel, precision=precision)


def _matmul_1x1_fwd(x, kernel, precision):
  return matmul_1x1(x, kernel, precision), (x, kernel)


def _matmul_1x1_bwd(precision, residuals, g):
  x, kernel = residuals
  channels_in, channels_out = kernel.shape
  dx = jnp.einsum('nhwd,cd->nhwc', g, kernel, precision=precision)
  x = x.reshape(-1, channels_in)
  g = g.reshape(-1, channels_out)
  if channels_in <= channels_out:
    x_t = jax.lax.optimization_barrier(x.T)
    dkernel = jnp.dot(x_t, g, precision=precision)
  else:
    g_t = jax.lax.optimization_barrier(g.T)
    dkernel = jnp.dot(g_t, x, precision=precision).T
  return dx, dkernel


matmul_1x1.defvjp(_matmul_1x1_fwd, _matmul_1x1_bwd)


def conv_or_matmul(lhs, rhs, window_strides, padding, **kwargs):
  """`lax.conv_general_dilated`, but on CPU a 1x1 convolution as a matmul.

  `nn.Conv`'s `conv_general_dilated`. A 1x1 convolution of NHWC frames is a
  matmul over channels (a strided one subsamples first): the same numbers to
  float rounding. XLA:CPU computes the kernel gradient of a 1x1 convolution
  as a generic convolution, several times slower than the matmul it is; the
  matmul's gradients are matmuls too (see `matmul_1x1`). On GPU and TPU the
  convolution libraries' 1x1 kernels are faster than the matmul, so there
  the convolution stays.
  """
  if (jax.default_backend() != 'cpu' or rhs.shape[:2] != (1, 1) or
      padding != 'VALID'):
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                        **kwargs)
  row_stride, column_stride = window_strides
  x = lhs[:, ::row_stride, ::column_stride]
  return matmul_1x1(x, rhs[0, 0], kwargs.get('precision'))


# 2D convolutions of NHWC frames with HWIO kernels.
_FRAME_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def conv3d_by_frames(lhs, rhs, window_strides, padding, **kwargs):
  """`lax.conv_general_dilated` of NTHWC clips; on CPU as 2D convolutions.

  `nn.Conv`'s `conv_general_dilated` for 3D ResNets. XLA:CPU runs 3D
  convolutions several times slower than 2D ones and matmuls. A (kt, kh, kw)
  kernel of temporal stride s is a 2D (kh, kw) convolution of each output
  step's kt input frames stacked over channels (frames s apart; a 1x1 one a
  matmul, `conv_or_matmul`): the same products, summed in another order.
  On GPU and TPU, whose libraries have fast 3D convolutions, and for grouped
  or dilated convolutions, it stays a 3D convolution.
  """
  dilated = any(d != 1 for name in ('lhs_dilation', 'rhs_dilation')
                for d in (kwargs.get(name) or (1,)))
  if (jax.default_backend() != 'cpu' or isinstance(padding, str) or dilated
      or kwargs.get('feature_group_count', 1) != 1):
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                        **kwargs)
  kernel_t, kernel_h, kernel_w, channels_in, channels_out = rhs.shape
  stride_t = window_strides[0]
  x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), (0, 0), (0, 0), (0, 0)))
  steps = (x.shape[1] - kernel_t) // stride_t + 1
  last = stride_t * (steps - 1) + 1
  stacked = jnp.concatenate([x[:, k:k + last:stride_t]
                             for k in range(kernel_t)], axis=-1)
  clips = stacked.shape[0]
  kernel = rhs.transpose(1, 2, 0, 3, 4).reshape(
      kernel_h, kernel_w, kernel_t * channels_in, channels_out)
  spatial_padding = tuple(tuple(pair) for pair in padding[1:])
  y = conv_or_matmul(
      stacked.reshape((clips * steps,) + stacked.shape[2:]), kernel,
      tuple(window_strides[1:]),
      'VALID' if spatial_padding == ((0, 0), (0, 0)) else spatial_padding,
      dimension_numbers=_FRAME_DIMENSIONS, precision=kwargs.get('precision'),
      preferred_element_type=kwargs.get('preferred_element_type'))
  return y.reshape((clips, steps) + y.shape[1:])
