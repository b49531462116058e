"""A per-frame ResNet with optional squeeze-and-excitation and temporal shift.

PyTorch conventions throughout (explicit symmetric padding, BatchNorm eps 1e-5
and torch momentum 0.1), so that torchvision and official MANet weights convert
one to one. Frames arrive with time folded into the batch: `(N*T, H, W, C)`.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from maxmicro import ops

ModuleDef = Any

# torchvision's ResNet initialisation: Kaiming normal, fan out, ReLU gain.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's default for `nn.Linear`, which the official SE gates keep (the
# ImageNet weights do not cover them): Kaiming uniform with a=sqrt(5), that is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear_kernel_init = nn.initializers.variance_scaling(
    1 / 3, 'fan_in', 'uniform')

# BatchNorm epsilon, PyTorch's; `models.folding` folds with the same.
BATCH_NORM_EPSILON = 1e-5


def _pad(size):
  return ((size, size), (size, size))


class _NoNorm(nn.Module):
  """Where a BatchNorm was before it was folded into its convolution."""

  @nn.compact
  def __call__(self, x):
    return x


class SqueezeExcite(nn.Module):
  """Per-frame channel gate: pool, Dense C->C/r, ReLU, Dense C/r->C, sigmoid."""
  reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # (N*T, H, W, C)
    channels = x.shape[-1]
    gate = jnp.mean(x, axis=(1, 2))
    gate = nn.Dense(channels // self.reduction, use_bias=False,
                    dtype=self.dtype, kernel_init=torch_linear_kernel_init,
                    name='fc1')(gate)
    gate = nn.relu(gate)
    gate = nn.Dense(channels, use_bias=False, dtype=self.dtype,
                    kernel_init=torch_linear_kernel_init, name='fc2')(gate)
    return x * nn.sigmoid(gate)[:, None, None, :]


class TemporalMix(nn.Module):
  """What MANet puts before conv1 of each block: SE gate, then shift."""
  use_se: bool
  use_shift: bool
  num_segments: int
  fold_div: int = 8
  se_reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # (N*T, H, W, C)
    if self.use_se:
      x = SqueezeExcite(self.se_reduction, dtype=self.dtype, name='se')(x)
    if self.use_shift:
      x = ops.temporal_shift(x, self.num_segments, self.fold_div)
    return x


class BasicBlock(nn.Module):
  """ResNet-18/34 block; the temporal mix acts on the residual branch."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  mix: ModuleDef
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.mix(name='mix')(x)
    y = self.conv(self.filters, (3, 3), (self.strides,) * 2, padding=_pad(1),
                  name='conv1')(y)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=_pad(1), name='conv2')(y)
    y = self.norm(name='bn2')(y)
    return nn.relu(_shortcut(self, residual, y) + y)


class BottleneckBlock(nn.Module):
  """ResNet-50/101 block, stride on the 3x3 conv (torchvision v1.5)."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  mix: ModuleDef
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.mix(name='mix')(x)
    y = self.conv(self.filters, (1, 1), name='conv1')(y)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), (self.strides,) * 2, padding=_pad(1),
                  name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters * 4, (1, 1), name='conv3')(y)
    y = self.norm(name='bn3')(y)
    return nn.relu(_shortcut(self, residual, y) + y)


def _shortcut(block, residual, y):
  """Identity, or a strided 1x1 conv + BN where the shape changes."""
  if residual.shape == y.shape:
    return residual
  residual = block.conv(y.shape[-1], (1, 1), (block.strides,) * 2,
                        name='downsample_conv')(residual)
  return block.norm(name='downsample_bn')(residual)


class ResNet(nn.Module):
  """Per-frame ResNet trunk: `(N*T, H, W, 3)` -> pooled `(N*T, C_out)`."""
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  width: int = 64
  use_se: bool = False
  use_shift: bool = False
  num_segments: int = 8
  fold_div: int = 8
  se_reduction: int = 4
  # False: no BatchNorm layers, and convolutions with a bias instead; the
  # inference form whose variables `models.folding` makes from a trained
  # model's (eval mode only).
  batch_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=not self.batch_norm,
                             padding='VALID', dtype=self.dtype,
                             kernel_init=conv_kernel_init,
                             conv_general_dilated=ops.conv_or_matmul)
    # Flax momentum is 1 - torch momentum (0.1).
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=BATCH_NORM_EPSILON,
                             dtype=self.dtype)
    if not self.batch_norm:
      norm = _NoNorm
    mix = functools.partial(TemporalMix, use_se=self.use_se,
                            use_shift=self.use_shift,
                            num_segments=self.num_segments,
                            fold_div=self.fold_div,
                            se_reduction=self.se_reduction, dtype=self.dtype)

    x = conv(self.width, (7, 7), (2, 2), padding=_pad(3), name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(1))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for index in range(num_blocks):
        x = self.block_cls(
            filters=self.width * 2**stage,
            strides=2 if stage > 0 and index == 0 else 1,
            conv=conv, norm=norm, mix=mix,
            name=f'layer{stage + 1}_{index}')(x)
    return jnp.mean(x, axis=(1, 2))


STAGE_SIZES = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
BLOCK_CLS = {18: BasicBlock, 34: BasicBlock, 50: BottleneckBlock,
             101: BottleneckBlock}

ResNet18 = functools.partial(ResNet, stage_sizes=STAGE_SIZES[18],
                             block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=STAGE_SIZES[34],
                             block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=STAGE_SIZES[50],
                             block_cls=BottleneckBlock)
ResNet101 = functools.partial(ResNet, stage_sizes=STAGE_SIZES[101],
                              block_cls=BottleneckBlock)


def from_config(model_config, dtype):
  """The ResNet of a config's model section: TSN, TSM or MANet (`use_se`
  and `use_shift` switch the SE gate and the temporal shift: neither is TSN,
  the shift alone TSM, both MANet)."""
  stage_sizes = tuple(model_config.stage_sizes or
                      STAGE_SIZES[model_config.depth])
  return functools.partial(
      ResNet,
      stage_sizes=stage_sizes,
      block_cls=BLOCK_CLS[model_config.depth],
      width=model_config.width,
      use_se=model_config.use_se,
      use_shift=model_config.use_shift,
      num_segments=model_config.num_segments,
      fold_div=model_config.fold_div,
      se_reduction=model_config.se_reduction,
      dtype=dtype)


def check_config(config):
  """`choices` (the depth) say all a ResNet config needs."""
  del config
