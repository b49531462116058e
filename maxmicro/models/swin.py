"""Video Swin Transformer (Swin3D) as mmaction2 1.x and torchvision build it.

mmaction2 `mmaction/models/backbones/swin.py` (`SwinTransformer3D`, the MAC
2024 track-1 baseline's backbone) and torchvision `models/video/
swin_transformer.py` (`swin3d_t/s/b`) compute the same function: a 3D patch
embedding (a Conv3d whose stride is its kernel, then LayerNorm), stages of
pre-norm blocks with multi-head self-attention inside 3D windows (every
second block's windows shifted by half a window, with the attention mask of
the shifted layout), a relative position bias per head, a GELU MLP,
stochastic depth rising linearly over all blocks, patch merging (2x2 over
space, LayerNorm, a Linear without bias) between stages, and a final
LayerNorm. Both clip a window dimension to the feature size where the
feature is smaller, with no shift there, and index the bias table with the
first `N x N` entries of the full window's relative-position index; this
module does the same, so that converted checkpoints give the same numbers.
Clips arrive whole: `(N, T, H, W, 3)`.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from maxmicro.models import vit

LAYER_NORM_EPSILON = 1e-5  # torch's nn.LayerNorm default, which both use.


def window_and_shift(size, window, shift):
  """The window and shift a block uses on features of `size` (T, H, W)."""
  window, shift = list(window), list(shift)
  for axis in range(3):
    if size[axis] <= window[axis]:
      window[axis], shift[axis] = size[axis], 0
  return tuple(window), tuple(shift)


def relative_position_index(window):
  """`(V, V)` int32 index into the `(2Wd-1)(2Wh-1)(2Ww-1)` bias table of a
  full window of V = Wd*Wh*Ww tokens (in (t, h, w) order)."""
  coords = np.stack(np.meshgrid(*(np.arange(w) for w in window),
                                indexing='ij')).reshape(3, -1)
  relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
  relative = relative + np.array(window) - 1
  strides = np.array([(2 * window[1] - 1) * (2 * window[2] - 1),
                      2 * window[2] - 1, 1])
  return (relative * strides).sum(-1).astype(np.int32)


def _partition(x, window):
  """`(B, T, H, W, C)` -> `(B, nW, V, C)`, windows in (t, h, w) order."""
  b, t, h, w, c = x.shape
  x = x.reshape(b, t // window[0], window[0], h // window[1], window[1],
                w // window[2], window[2], c)
  return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(
      b, -1, int(np.prod(window)), c)


def _reverse(windows, window, size):
  """`_partition`'s inverse: `(B, nW, V, C)` -> `(B, T, H, W, C)`."""
  b, c = windows.shape[0], windows.shape[-1]
  grid = tuple(s // w for s, w in zip(size, window))
  x = windows.reshape((b,) + grid + tuple(window) + (c,))
  return x.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape((b,) + tuple(size) + (c,))


def shifted_window_mask(size, window, shift):
  """`(nW, V, V)` float32: 0 within a region of the shifted layout, -100
  across regions (the references' value), for padded features of `size`."""
  labels = np.zeros(size, np.float32)
  count = 0
  regions = [(slice(0, -w), slice(-w, -s), slice(-s, None))
             for w, s in zip(window, shift)]
  for t in regions[0]:
    for h in regions[1]:
      for w in regions[2]:
        labels[t, h, w] = count
        count += 1
  windows = _partition(labels[None, ..., None], window)[0, ..., 0]
  different = windows[:, None, :] != windows[:, :, None]
  return np.where(different, -100.0, 0.0).astype(np.float32)


class WindowAttention(nn.Module):
  """W-MSA / SW-MSA with a relative position bias, on `(B, T, H, W, C)`."""
  num_heads: int
  window_size: Sequence[int]
  shift_size: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    size = x.shape[1:4]
    window, shift = window_and_shift(size, self.window_size, self.shift_size)
    pads = [(-s) % w for s, w in zip(size, window)]
    x = jnp.pad(x, [(0, 0)] + [(0, p) for p in pads] + [(0, 0)])
    padded = x.shape[1:4]
    shifted = any(shift)
    if shifted:
      x = jnp.roll(x, [-s for s in shift], axis=(1, 2, 3))
    windows = _partition(x, window)  # (B, nW, V, C)
    width, volume = x.shape[-1], windows.shape[2]
    head_dim = width // self.num_heads
    qkv = nn.Dense(3 * width, dtype=self.dtype,
                   kernel_init=vit.dense_kernel_init, name='qkv')(windows)
    qkv = qkv.reshape(windows.shape[:3] + (3, self.num_heads, head_dim))
    query, key, value = (qkv[..., i, :, :] for i in range(3))
    logits = jnp.einsum('bwqhd,bwkhd->bwhqk', query * head_dim ** -0.5, key)
    table = self.param(
        'relative_position_bias_table', vit.dense_kernel_init,
        (int(np.prod([2 * w - 1 for w in self.window_size])), self.num_heads))
    # The full window's index, cut to a clipped window's tokens as the
    # references do (see the module docstring).
    index = relative_position_index(self.window_size)[:volume, :volume]
    bias = table[index.reshape(-1)].reshape(volume, volume, -1)
    logits = logits + bias.transpose(2, 0, 1).astype(logits.dtype)
    if shifted:
      mask = shifted_window_mask(padded, window, shift)
      logits = logits + jnp.asarray(mask, logits.dtype)[None, :, None]
    weights = nn.softmax(logits.astype(jnp.float32)).astype(value.dtype)
    out = jnp.einsum('bwhqk,bwkhd->bwqhd', weights, value).reshape(
        windows.shape)
    out = nn.Dense(width, dtype=self.dtype, kernel_init=vit.dense_kernel_init,
                   name='proj')(out)
    out = _reverse(out, window, padded)
    if shifted:
      out = jnp.roll(out, shift, axis=(1, 2, 3))
    return out[:, :size[0], :size[1], :size[2]]


class Block(nn.Module):
  """Pre-norm block: windowed attention, then the MLP, each with drop path."""
  num_heads: int
  window_size: Sequence[int]
  shift_size: Sequence[int]
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = functools.partial(nn.LayerNorm, epsilon=LAYER_NORM_EPSILON,
                             dtype=self.dtype)
    # Stochastic depth: a sample's whole residual branch is dropped.
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2, 3, 4),
                           deterministic=not train)
    attention = WindowAttention(self.num_heads, self.window_size,
                                self.shift_size, dtype=self.dtype, name='attn')
    x = x + drop_path(attention(norm(name='norm1')(x)))
    mlp = vit.Mlp(int(x.shape[-1] * self.mlp_ratio), dtype=self.dtype,
                  name='mlp')
    return x + drop_path(mlp(norm(name='norm2')(x)))


class PatchMerging(nn.Module):
  """2x2 neighbours over space concatenated, LayerNorm, Linear to 2C."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # (B, T, H, W, C)
    height, width = x.shape[2:4]
    x = jnp.pad(x, [(0, 0), (0, 0), (0, height % 2), (0, width % 2), (0, 0)])
    x = jnp.concatenate([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
                         x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], axis=-1)
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype,
                     name='norm')(x)
    return nn.Dense(x.shape[-1] // 2, use_bias=False, dtype=self.dtype,
                    kernel_init=vit.dense_kernel_init, name='reduction')(x)


class SwinTransformer3D(nn.Module):
  """Patch embedding -> stages of (shifted) window blocks -> final norm.

  Returns `(N, C)` features averaged over time and space; with
  `step_features=True` in the call, `(N, T // patch_size[0], C)`: averaged
  over space only, for the detector's per-step features.
  """
  embed_dim: int
  depths: Sequence[int]
  num_heads: Sequence[int]
  patch_size: Sequence[int] = (2, 4, 4)
  window_size: Sequence[int] = (8, 7, 7)
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  remat: bool = False  # Recompute each block's activations in the backward.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False, step_features: bool = False):
    size = video.shape[1:4]
    pads = [(-s) % p for s, p in zip(size, self.patch_size)]
    video = jnp.pad(video.astype(self.dtype),
                    [(0, 0)] + [(0, p) for p in pads] + [(0, 0)])
    x = nn.Conv(self.embed_dim, tuple(self.patch_size),
                strides=tuple(self.patch_size), padding='VALID',
                dtype=self.dtype, kernel_init=vit.patch_kernel_init,
                name='patch_embed_proj')(video)
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype,
                     name='patch_embed_norm')(x)
    block = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
    rates = iter(np.linspace(0, self.drop_path_rate, sum(self.depths)))
    shift = tuple(w // 2 for w in self.window_size)
    for stage, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      if stage:
        x = PatchMerging(dtype=self.dtype, name=f'downsample_{stage - 1}')(x)
      for index in range(depth):
        x = block(heads, tuple(self.window_size),
                  shift if index % 2 else (0, 0, 0), self.mlp_ratio,
                  float(next(rates)), dtype=self.dtype,
                  name=f'layers_{stage}_blocks_{index}')(x, train)
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype,
                     name='norm')(x)
    return x.mean(axis=(2, 3)) if step_features else x.mean(axis=(1, 2, 3))


def from_config(model_config, dtype):
  """The `SwinTransformer3D` of a `configs/vswin.py` model section."""
  return functools.partial(
      SwinTransformer3D,
      embed_dim=model_config.embed_dim,
      depths=tuple(model_config.depths),
      num_heads=tuple(model_config.num_heads),
      patch_size=(model_config.tubelet_size, model_config.patch_size,
                  model_config.patch_size),
      window_size=tuple(model_config.window_size),
      mlp_ratio=model_config.mlp_ratio,
      drop_path_rate=model_config.drop_path_rate,
      remat=model_config.remat,
      dtype=dtype)


def check_config(config):
  """Stage lists of one length, and heads that split each stage's width."""
  model = config.model
  if len(model.depths) != len(model.num_heads) or not model.depths:
    raise ValueError(f'config.model.depths={tuple(model.depths)} and '
                     f'config.model.num_heads={tuple(model.num_heads)} must '
                     'name the same stages.')
  for stage, heads in enumerate(model.num_heads):
    width = model.embed_dim * 2**stage
    if width % heads:
      raise ValueError(f'stage {stage} is {width} wide (config.model.'
                       f'embed_dim={model.embed_dim} doubled per stage) and '
                       f'does not split into {heads} heads '
                       '(config.model.num_heads).')
  if len(model.window_size) != 3 or min(model.window_size) < 1:
    raise ValueError(f'config.model.window_size={tuple(model.window_size)} '
                     'must be 3 positive sizes (T, H, W).')
