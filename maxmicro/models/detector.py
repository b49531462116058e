"""An anchor-free temporal action detector over per-step features (MMA-52).

ActionFormer-style (Zhang, Wu and Li, ECCV 2022), kept convolutional so that
it is quick on a CPU: the backbone's per-step features `(N, L, C)` go through
a projection and a feature pyramid of `num_levels` levels, each half as long
as the one before; heads shared by all levels give, at every point of every
level, independent sigmoid logits per class (MMA-52 is multi-label) and the
distances from the point to the start and the end of its action.

Time is counted in input steps: step t of the window is time t, and the point
j of level i sits at time `j * 2**i` with stride `2**i`. Every strided layer
has kernel k, stride 2 and padding k // 2, so level i has `ceil(L / 2**i)`
points and any L works, odd ones included.
"""

import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from maxmicro import labels


class Points(NamedTuple):
  """The points of all levels, level 0 first; P points in all."""
  centres: np.ndarray  # (P,) float32, time of the point in input steps.
  strides: np.ndarray  # (P,) float32, 2**level.
  ranges: np.ndarray  # (P, 2) float32, [lo, hi) of instance lengths in steps.


def level_lengths(length, num_levels):
  """Points per level: `ceil(length / 2**i)` for i < num_levels."""
  lengths = [length]
  for _ in range(num_levels - 1):
    lengths.append(-(-lengths[-1] // 2))
  return tuple(lengths)


def default_regression_ranges(num_levels):
  """Instance lengths (in steps) that level i learns: [4, 8) * 2**i.

  So every instance spans 4 to 8 points of its level; the first level also
  takes the shortest and the last the longest. ActionFormer's ranges
  ([0, 4), [4, 8), ... on the larger of the two distances to the ends, in
  points) come to about the same split, but are not a function of the
  instance alone; a length is, so a test can say which level owns it.
  """
  ranges = [[4.0 * 2**level, 8.0 * 2**level] for level in range(num_levels)]
  ranges[0][0] = 0.0
  ranges[-1][1] = np.inf
  return tuple(map(tuple, ranges))


def point_grid(length, num_levels, regression_ranges=None):
  """The `Points` of a window of `length` steps (numpy, static shapes).

  Args:
    length: L, steps of the input window.
    num_levels: levels of the pyramid.
    regression_ranges: `num_levels` pairs `(lo, hi)` of instance lengths in
      steps, or None for `default_regression_ranges`.
  """
  if regression_ranges is None:
    regression_ranges = default_regression_ranges(num_levels)
  if len(regression_ranges) != num_levels:
    raise ValueError(f'{len(regression_ranges)} regression ranges for '
                     f'{num_levels} levels.')
  centres, strides, ranges = [], [], []
  for level, points in enumerate(level_lengths(length, num_levels)):
    stride = 2**level
    centres.append(np.arange(points) * stride)
    strides.append(np.full(points, stride))
    ranges.append(np.tile(regression_ranges[level], (points, 1)))
  return Points(*(np.concatenate(parts).astype(np.float32)
                  for parts in (centres, strides, ranges)))


class ConvBlock(nn.Module):
  """Conv1D (k, stride, padding k // 2) -> LayerNorm -> ReLU, zero when masked.

  LayerNorm, not GroupNorm: it normalises each step alone, so padded steps
  never leak into the statistics of real ones.
  """
  width: int
  kernel_size: int = 3
  strides: int = 1
  activate: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):  # (N, L, C), (N, L') with L' the output steps.
    pad = self.kernel_size // 2
    x = nn.Conv(self.width, (self.kernel_size,), self.strides,
                padding=((pad, pad),), dtype=self.dtype, name='conv')(x)
    x = nn.LayerNorm(dtype=self.dtype, name='norm')(x)
    if self.activate:
      x = nn.relu(x)
    return x * mask[..., None].astype(x.dtype)


class ResidualBlock(nn.Module):
  """Two ConvBlocks, the second without its ReLU, plus the input, ReLU."""
  width: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):  # (N, L, C), (N, L)
    y = ConvBlock(self.width, self.kernel_size, dtype=self.dtype,
                  name='conv1')(x, mask)
    y = ConvBlock(self.width, self.kernel_size, activate=False,
                  dtype=self.dtype, name='conv2')(y, mask)
    return nn.relu(x + y)


class LocalAttention(nn.Module):
  """Pre-norm self-attention of each step to its `window` neighbours."""
  num_heads: int
  window: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):  # (N, L, C), (N, L)
    steps = jnp.arange(x.shape[1])
    band = jnp.abs(steps[:, None] - steps[None, :]) <= self.window // 2
    attend = band[None, None] & mask[:, None, None, :]  # (N, 1, L, L)
    y = nn.LayerNorm(dtype=self.dtype, name='norm')(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, name='attention')(
            y, y, mask=attend)
    return (x + y) * mask[..., None].astype(x.dtype)


class LevelScales(nn.Module):
  """One learnt scale per pyramid level, as ActionFormer's `Scale`.

  A module holding a parameter named `scale`, not a bare parameter, so that
  the optimizer's parameter groups (`maxmicro.optim.parameter_group`) put it
  with the norm scales: no weight decay.
  """
  num_levels: int

  @nn.compact
  def __call__(self):
    return self.param('scale', nn.initializers.ones, (self.num_levels,))


class TemporalDetector(nn.Module):
  """Feature pyramid + shared heads: per-point class logits and distances.

  Layers: `projection`; per level, `downsample{i}` (i > 0, strided
  ConvBlock), `attention{i}` (with `attention_window`) and `level{i}`
  (ResidualBlock); heads `cls_conv{j}` -> `cls_logits` and `reg_conv{j}` ->
  `regression`, the same parameters at every level, and
  `regression_scale` (`LevelScales`).
  """
  num_classes: int = labels.NUM_ACTIONS
  num_levels: int = 4
  width: int = 256
  kernel_size: int = 3  # Odd, so that padding k // 2 keeps points centred.
  head_depth: int = 2  # ConvBlocks in each head before its output conv.
  attention_window: Optional[int] = None  # None: no attention.
  num_heads: int = 4
  # Instance lengths (steps) per level; None: `default_regression_ranges`.
  regression_ranges: Optional[Sequence[Tuple[float, float]]] = None
  prior_probability: float = 0.01  # Initial sigmoid score (RetinaNet).
  dtype: Any = jnp.float32

  def points(self, length):
    """`point_grid` of this detector for windows of `length` steps."""
    return point_grid(length, self.num_levels, self.regression_ranges)

  @nn.compact
  def __call__(self, features, mask=None, train=False):
    """Scores every point of the pyramid.

    Args:
      features: `(N, L, C)` per-step features of the backbone.
      mask: `(N, L)` bool, False at padded steps; None: all valid.
      train: unused (no dropout, no BatchNorm); taken so that the trainer
        calls every task's model alike (`model.init(rng, x, train=False)`).

    Returns:
      A dict of float32 arrays over the P points of `self.points(L)`:
      `cls_logits (N, P, num_classes)`; `regression (N, P, 2)`, the
      non-negative distances from the point to the start and to the end, in
      strides of its level; `mask (N, P)` bool, False at padded points.
    """
    del train
    if self.kernel_size % 2 == 0:
      raise ValueError(f'kernel_size={self.kernel_size} must be odd.')
    mask = (jnp.ones(features.shape[:2], bool) if mask is None
            else jnp.asarray(mask, bool))
    block = dict(kernel_size=self.kernel_size, dtype=self.dtype)
    x = features.astype(self.dtype) * mask[..., None].astype(self.dtype)
    x = ConvBlock(self.width, **block, name='projection')(x, mask)
    pyramid = []
    for level in range(self.num_levels):
      if level:
        # Point j of the new level sits on point 2j of the previous one.
        mask = mask[:, ::2]
        x = ConvBlock(self.width, strides=2, **block,
                      name=f'downsample{level}')(x, mask)
      if self.attention_window:
        x = LocalAttention(self.num_heads, self.attention_window,
                           dtype=self.dtype, name=f'attention{level}')(x, mask)
      x = ResidualBlock(self.width, **block, name=f'level{level}')(x, mask)
      pyramid.append((x, mask))

    # Modules made once and called at every level share their parameters.
    # Small output weights: scores start at the prior, distances near zero
    # (where the DIoU loss still has a gradient).
    pad = self.kernel_size // 2
    out_conv = lambda width, name, **init: nn.Conv(  # noqa: E731
        width, (self.kernel_size,), padding=((pad, pad),), dtype=self.dtype,
        kernel_init=nn.initializers.normal(stddev=0.01), name=name, **init)
    cls_convs = [ConvBlock(self.width, **block, name=f'cls_conv{j}')
                 for j in range(self.head_depth)]
    reg_convs = [ConvBlock(self.width, **block, name=f'reg_conv{j}')
                 for j in range(self.head_depth)]
    # Every score starts at the prior, so the focal loss of the many
    # negatives does not swamp the first steps.
    prior_bias = -np.log((1 - self.prior_probability) / self.prior_probability)
    cls_out = out_conv(self.num_classes, 'cls_logits',
                       bias_init=nn.initializers.constant(prior_bias))
    reg_out = out_conv(2, 'regression')
    scales = LevelScales(self.num_levels, name='regression_scale')()
    outputs = {'cls_logits': [], 'regression': [], 'mask': []}
    for level, (x, level_mask) in enumerate(pyramid):
      y = x
      for conv in cls_convs:
        y = conv(y, level_mask)
      outputs['cls_logits'].append(cls_out(y).astype(jnp.float32))
      y = x
      for conv in reg_convs:
        y = conv(y, level_mask)
      distances = scales[level] * reg_out(y).astype(jnp.float32)
      outputs['regression'].append(
          nn.relu(distances) * level_mask[..., None])
      outputs['mask'].append(level_mask)
    return {key: jnp.concatenate(value, axis=1)
            for key, value in outputs.items()}


# About 11k parameters (8 input channels, 52 classes), for tests.
TinyTemporalDetector = functools.partial(TemporalDetector, num_levels=3,
                                         width=16, head_depth=1)
