"""3D ResNets (I3D, SlowOnly) as mmaction2 builds `ResNet3d`.

mmaction2 `mmaction/models/backbones/resnet3d.py` (and `ResNet3dSlowOnly`,
a `ResNet3d` with other stem strides and inflation): a stem convolution of
`conv1_kernel` (spatial stride 2, temporal `conv1_stride_t`) with
BatchNorm and ReLU, a (1, 3, 3) max pool (temporal stride
`pool1_stride_t`), bottleneck stages whose blocks are inflated or not
(`inflate`, per block: a (3, 1, 1) first convolution in the '3x1x1' style,
(3, 3, 3) second convolution in '3x3x3'), the stride on the second
convolution ('pytorch' style), and optionally a (2, 1, 1) max pool after
the first stage (`with_pool2`). Convolutions have no bias; each is followed
by BatchNorm (mmcv's `ConvModule`: `conv`, `bn`). PyTorch conventions as in
`models.resnet`. Clips arrive whole: `(N, T, H, W, 3)`.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from maxmicro import ops
from maxmicro.models import resnet

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
INFLATE_STYLES = ('3x1x1', '3x3x3')


class ConvModule(nn.Module):
  """mmcv's ConvModule: a bias-free 3D convolution, BatchNorm, ReLU."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1, 1)
  activate: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    padding = [((k - 1) // 2,) * 2 for k in self.kernel_size]
    x = nn.Conv(self.features, tuple(self.kernel_size), tuple(self.strides),
                padding=padding, use_bias=False, dtype=self.dtype,
                kernel_init=resnet.conv_kernel_init,
                conv_general_dilated=ops.conv3d_by_frames, name='conv')(x)
    # Flax momentum is 1 - torch momentum (0.1).
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=resnet.BATCH_NORM_EPSILON, dtype=self.dtype,
                     name='bn')(x)
    return nn.relu(x) if self.activate else x


class Bottleneck3d(nn.Module):
  """1x1x1 (or 3x1x1) -> 1x3x3 (or 3x3x3) -> 1x1x1 to 4x, plus shortcut."""
  planes: int
  spatial_stride: int = 1
  temporal_stride: int = 1
  inflate: bool = True
  inflate_style: str = '3x1x1'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvModule, dtype=self.dtype)
    first, second = (1, 1, 1), (1, 3, 3)
    if self.inflate and self.inflate_style == '3x1x1':
      first = (3, 1, 1)
    elif self.inflate:
      second = (3, 3, 3)
    strides = (self.temporal_stride,) + (self.spatial_stride,) * 2
    y = conv(self.planes, first, name='conv1')(x, train)
    y = conv(self.planes, second, strides, name='conv2')(y, train)
    y = conv(4 * self.planes, (1, 1, 1), activate=False, name='conv3')(y, train)
    # mmaction2 adds a projection when the spatial stride or the width
    # changes (a temporal stride alone keeps the identity).
    if self.spatial_stride != 1 or x.shape[-1] != 4 * self.planes:
      x = conv(4 * self.planes, (1, 1, 1), strides, activate=False,
               name='downsample')(x, train)
    return nn.relu(x + y)


class ResNet3d(nn.Module):
  """Stem -> (pool1) -> 4 bottleneck stages (pool2 after the first).

  Returns `(N, C)` features averaged over time and space; with
  `step_features=True` in the call, `(N, T', C)` averaged over space only.
  """
  stage_blocks: Sequence[int]
  inflate: Sequence[Sequence[int]]  # Per stage, per block: 1 inflates.
  base_channels: int = 64
  conv1_kernel: Sequence[int] = (3, 7, 7)
  conv1_stride_t: int = 1
  pool1_stride_t: int = 1
  with_pool2: bool = True
  inflate_style: str = '3x1x1'
  spatial_strides: Sequence[int] = (1, 2, 2, 2)
  temporal_strides: Sequence[int] = (1, 1, 1, 1)
  remat: bool = False  # Recompute each block's activations in the backward.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False, step_features: bool = False):
    x = ConvModule(self.base_channels, tuple(self.conv1_kernel),
                   (self.conv1_stride_t, 2, 2), dtype=self.dtype,
                   name='conv1')(video.astype(self.dtype), train)
    x = nn.max_pool(x, (1, 3, 3), strides=(self.pool1_stride_t, 2, 2),
                    padding=((0, 0), (1, 1), (1, 1)))
    block = (nn.remat(Bottleneck3d, static_argnums=(2,)) if self.remat
             else Bottleneck3d)
    for stage, num_blocks in enumerate(self.stage_blocks):
      for index in range(num_blocks):
        first = index == 0
        x = block(self.base_channels * 2**stage,
                  self.spatial_strides[stage] if first else 1,
                  self.temporal_strides[stage] if first else 1,
                  bool(self.inflate[stage][index]), self.inflate_style,
                  dtype=self.dtype, name=f'layer{stage + 1}_{index}')(x, train)
      if stage == 0 and self.with_pool2:
        x = nn.max_pool(x, (2, 1, 1), strides=(2, 1, 1))
    return x.mean(axis=(2, 3)) if step_features else x.mean(axis=(1, 2, 3))


def per_block_inflation(inflate, stage_blocks):
  """mmaction2's `inflate`: an int per stage (every block) or a tuple per
  block of each stage, as `(stage tuples of 0/1)`."""
  return tuple(
      (int(stage),) * blocks if np.ndim(stage) == 0 else tuple(stage)
      for stage, blocks in zip(inflate, stage_blocks))


def stage_blocks_of(model_config):
  return tuple(model_config.stage_blocks or STAGE_BLOCKS[model_config.depth])


def frames_per_step(model_config):
  """Frames one output step covers: the product of the temporal strides."""
  pool2 = 2 if model_config.with_pool2 else 1
  return (model_config.conv1_stride_t * model_config.pool1_stride_t * pool2 *
          int(np.prod(model_config.temporal_strides)))


def from_config(model_config, dtype):
  """The `ResNet3d` of a `configs/i3d.py` or `configs/slowonly.py` model."""
  stage_blocks = stage_blocks_of(model_config)
  return functools.partial(
      ResNet3d,
      stage_blocks=stage_blocks,
      inflate=per_block_inflation(model_config.inflate, stage_blocks),
      base_channels=model_config.base_channels,
      conv1_kernel=tuple(model_config.conv1_kernel),
      conv1_stride_t=model_config.conv1_stride_t,
      pool1_stride_t=model_config.pool1_stride_t,
      with_pool2=model_config.with_pool2,
      inflate_style=model_config.inflate_style,
      spatial_strides=tuple(model_config.spatial_strides),
      temporal_strides=tuple(model_config.temporal_strides),
      remat=model_config.remat,
      dtype=dtype)


def check_config(config):
  """Inflation and strides for every stage, clips of whole output steps."""
  model = config.model
  stage_blocks = stage_blocks_of(model)
  stages = len(stage_blocks)
  for field in ('inflate', 'spatial_strides', 'temporal_strides'):
    if len(model[field]) != stages:
      raise ValueError(f'config.model.{field}={tuple(model[field])!r} must '
                       f'have one entry per stage ({stages}).')
  for stage, (given, blocks) in enumerate(zip(model.inflate, stage_blocks)):
    if np.ndim(given) and len(given) != blocks:
      raise ValueError(f'config.model.inflate[{stage}]={tuple(given)!r} '
                       f'must have one entry per block ({blocks}).')
  if model.num_segments % frames_per_step(model):
    raise ValueError(
        f'config.model.num_segments={model.num_segments} is not a multiple '
        f'of the frames one output step covers ({frames_per_step(model)}: '
        'conv1_stride_t x pool1_stride_t x pool2 x temporal_strides).')
