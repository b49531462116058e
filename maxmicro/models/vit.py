"""A video ViT as VideoMAE / VideoMAE V2 fine-tune it.

OpenGVLab/VideoMAEv2 `models/modeling_finetune.py`: a tubelet embedding (a
Conv3d whose stride is its kernel), a fixed sine-cosine position table (or a
learnable one), pre-norm blocks, attention with a q and a v bias and no k
bias, a GELU MLP, optional layer scale, stochastic depth rising linearly over
the blocks, then mean pooling over all tokens and `fc_norm`. The head is the
classifier's (`models.video`). Clips arrive whole: `(N, T, H, W, 3)`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# timm / VideoMAE initialise every Linear as trunc_normal(std=0.02), bias 0.
dense_kernel_init = nn.initializers.truncated_normal(stddev=0.02)
# PyTorch's default Conv3d initialisation, which VideoMAE keeps for the
# tubelet embedding: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
patch_kernel_init = nn.initializers.variance_scaling(1 / 3, 'fan_in',
                                                     'uniform')
LAYER_NORM_EPSILON = 1e-6


def sinusoid_table(num_positions, dim):
  """`get_sinusoid_encoding_table`: `(num_positions, dim)` float32.

  Position p, channel j: p / 10000^(2*(j//2)/dim), sine on even channels and
  cosine on odd ones, over the flattened (t, h, w) token index.
  """
  positions = np.arange(num_positions, dtype=np.float64)[:, None]
  exponents = 2 * (np.arange(dim) // 2) / dim
  angles = positions / np.power(10000.0, exponents)[None, :]
  table = np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles))
  return table.astype(np.float32)


class Weights(nn.Module):
  """A Linear layer's parameters alone (`kernel`, optional `bias`), where
  the attention applies them in its own layout; the names and shapes are
  `nn.Dense`'s, so checkpoints and conversion see no difference."""
  shape: tuple
  use_bias: bool = True

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', dense_kernel_init, self.shape)
    bias = (self.param('bias', nn.initializers.zeros, self.shape[-1:])
            if self.use_bias else None)
    return kernel, bias


class Attention(nn.Module):
  """Multi-head self-attention; qkv has a q and a v bias, no k bias."""
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # (N, L, C)
    width = x.shape[-1]
    heads, head_dim = self.num_heads, width // self.num_heads
    qkv_kernel, _ = Weights((width, 3 * width), use_bias=False, name='qkv')()
    q_bias = self.param('q_bias', nn.initializers.zeros, (width,))
    v_bias = self.param('v_bias', nn.initializers.zeros, (width,))
    proj_kernel, proj_bias = Weights((width, width), name='proj')()
    x = x.astype(self.dtype)
    qkv_kernel = qkv_kernel.reshape(width, 3, heads, head_dim)
    bias = jnp.stack([q_bias, jnp.zeros_like(q_bias), v_bias]).reshape(
        3, 1, heads, 1, head_dim)
    proj_kernel = proj_kernel.reshape(heads, head_dim, width)
    if jax.default_backend() == 'cpu':
      # Heads first from the projection on: XLA:CPU then runs attention's
      # dots without relaying q, k and v out (faster by a third per block).
      query, key, value = jnp.einsum(
          'nlc,cthd->tnhld', x, qkv_kernel.astype(self.dtype)) + bias.astype(
              self.dtype)
      logits = jnp.einsum('nhqd,nhkd->nhqk', query * head_dim ** -0.5, key)
      weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(self.dtype)
      out = jnp.einsum('nhqk,nhkd->nhqd', weights, value)
      out = jnp.einsum('nhld,hdc->nlc', out, proj_kernel.astype(self.dtype))
    else:
      # cuDNN's fused kernel on GPU (bf16), XLA's on TPU.
      query, key, value = jnp.einsum(
          'nlc,cthd->tnlhd', x, qkv_kernel.astype(self.dtype)) + bias.astype(
              self.dtype).transpose(0, 1, 3, 2, 4)
      out = jax.nn.dot_product_attention(query, key, value,
                                         scale=head_dim ** -0.5)
      out = jnp.einsum('nlhd,hdc->nlc', out, proj_kernel.astype(self.dtype))
    return out + proj_bias.astype(self.dtype)


class Mlp(nn.Module):
  """fc1 -> GELU (erf, as torch's nn.GELU) -> fc2."""
  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=dense_kernel_init)
    hidden = nn.gelu(dense(self.hidden_dim, name='fc1')(x), approximate=False)
    return dense(x.shape[-1], name='fc2')(hidden)


class Block(nn.Module):
  """Pre-norm transformer block with optional layer scale and drop path."""
  num_heads: int
  mlp_dim: int
  drop_path_rate: float = 0.0
  init_values: float = 0.0  # > 0: layer scale `gamma_1`, `gamma_2`.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = functools.partial(nn.LayerNorm, epsilon=LAYER_NORM_EPSILON,
                             dtype=self.dtype)
    attention = Attention(self.num_heads, dtype=self.dtype, name='attn')
    mlp = Mlp(self.mlp_dim, dtype=self.dtype, name='mlp')
    # Stochastic depth: a sample's whole residual branch is dropped.
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2),
                           deterministic=not train)
    for index, (layer, branch) in enumerate(((norm(name='norm1'), attention),
                                             (norm(name='norm2'), mlp)), 1):
      update = branch(layer(x))
      if self.init_values > 0:
        gamma = self.param(f'gamma_{index}', nn.initializers.constant(
            self.init_values), (x.shape[-1],))
        update = update * gamma.astype(update.dtype)
      x = x + drop_path(update)
    return x


class VisionTransformer(nn.Module):
  """Tubelets -> position table -> blocks -> mean over tokens -> fc_norm.

  Returns `(N, C)` pooled clip features; with `step_features=True` in the
  call, `(N, T // tubelet_size, C)`: the tokens pooled over space only, for
  the detector's per-step features.
  """
  embed_dim: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int = 16
  tubelet_size: int = 2
  learnable_pos_embed: bool = False
  init_values: float = 0.0
  drop_path_rate: float = 0.0
  remat: bool = False  # Recompute each block's activations in the backward.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False, step_features: bool = False):
    patch = (self.tubelet_size, self.patch_size, self.patch_size)
    tokens = nn.Conv(self.embed_dim, patch, strides=patch, padding='VALID',
                     dtype=self.dtype, kernel_init=patch_kernel_init,
                     name='patch_embed')(video.astype(self.dtype))
    grid = tokens.shape[1:4]  # (T', H', W'), flattened in this order.
    tokens = tokens.reshape((tokens.shape[0], -1, self.embed_dim))
    if self.learnable_pos_embed:
      table = self.param('pos_embed', dense_kernel_init,
                         (1,) + tokens.shape[1:])
    else:
      table = sinusoid_table(tokens.shape[1], self.embed_dim)[None]
    tokens = tokens + jnp.asarray(table, tokens.dtype)
    block = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
    rates = np.linspace(0, self.drop_path_rate, self.depth)
    for index, rate in enumerate(rates):
      tokens = block(self.num_heads, self.mlp_dim, float(rate),
                     self.init_values, dtype=self.dtype,
                     name=f'blocks_{index}')(tokens, train)
    if step_features:
      pooled = tokens.reshape((tokens.shape[0], grid[0], -1,
                               self.embed_dim)).mean(axis=2)
    else:
      pooled = tokens.mean(axis=1)
    return nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype,
                        name='fc_norm')(pooled)


def from_config(model_config, dtype):
  """The `VisionTransformer` of a `configs/videomae.py` model section."""
  return functools.partial(
      VisionTransformer,
      embed_dim=model_config.embed_dim,
      depth=model_config.depth,
      num_heads=model_config.num_heads,
      mlp_dim=model_config.mlp_dim,
      patch_size=model_config.patch_size,
      tubelet_size=model_config.tubelet_size,
      learnable_pos_embed=model_config.learnable_pos_embed,
      init_values=model_config.init_values,
      drop_path_rate=model_config.drop_path_rate,
      remat=model_config.remat,
      dtype=dtype)


def check_config(config):
  """Tubelets must tile the clip, and heads split the width."""
  model = config.model
  if model.embed_dim % model.num_heads:
    raise ValueError(f'config.model.embed_dim={model.embed_dim} does not '
                     f'split into config.model.num_heads={model.num_heads}.')
  if model.num_segments % model.tubelet_size:
    raise ValueError(
        f'config.model.num_segments={model.num_segments} is not a multiple '
        f'of config.model.tubelet_size={model.tubelet_size}.')
  if config.data.image_size % model.patch_size:
    raise ValueError(
        f'config.data.image_size={config.data.image_size} is not a multiple '
        f'of config.model.patch_size={model.patch_size}.')
