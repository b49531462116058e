"""Functional building blocks shared by the models."""

import jax.numpy as jnp


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
