"""Mixup and CutMix of a training batch, on the device.

As mmaction2 1.x's `MixupBlending` and `CutmixBlending` (`mmaction/models/
utils/blending_utils.py`): each clip is mixed with the clip a random
permutation of the batch pairs it with, by a weight `lam ~ Beta(alpha,
alpha)` drawn once per batch. Mixup blends whole clips; CutMix pastes one box
of the partner (the same box in every frame) and sets `lam` to the share of
the area that stays. With both on, each batch uses one of them, with
probability 1/2 each (timm's `switch_prob`, as VideoMAE fine-tunes). The
loss is then `lam * loss(labels) + (1 - lam) * loss(partner labels)`, equal
to the cross-entropy against the mixed soft labels because cross-entropy is
linear in its targets.
"""

import jax
import jax.numpy as jnp


def _mixup(video, partner, rng, alpha):
  lam = jax.random.beta(rng, alpha, alpha)
  return lam * video + (1 - lam) * partner, lam


def _cutmix(video, partner, rng, alpha):
  lam_rng, y_rng, x_rng = jax.random.split(rng, 3)
  lam = jax.random.beta(lam_rng, alpha, alpha)
  height, width = video.shape[-3:-1]
  ratio = jnp.sqrt(1 - lam)
  half_h = jnp.floor(height * ratio).astype(jnp.int32) // 2
  half_w = jnp.floor(width * ratio).astype(jnp.int32) // 2
  centre_y = jax.random.randint(y_rng, (), 0, height)
  centre_x = jax.random.randint(x_rng, (), 0, width)
  top, bottom = (jnp.clip(centre_y - half_h, 0, height),
                 jnp.clip(centre_y + half_h, 0, height))
  left, right = (jnp.clip(centre_x - half_w, 0, width),
                 jnp.clip(centre_x + half_w, 0, width))
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
  mixed = jnp.where(box[:, :, None], partner, video)
  kept = 1 - (bottom - top) * (right - left) / (height * width)
  return mixed, kept.astype(video.dtype)


def mix(video, rng, mixup_alpha, cutmix_alpha):
  """A mixed batch of `(B, T, H, W, C)` float clips.

  Returns:
    `(mixed video, partner (B,) indices, lam)`.
  """
  perm_rng, mix_rng, choice_rng = jax.random.split(rng, 3)
  partner_index = jax.random.permutation(perm_rng, video.shape[0])
  partner = video[partner_index]
  if mixup_alpha and cutmix_alpha:
    mixed, lam = jax.lax.cond(
        jax.random.bernoulli(choice_rng),
        lambda: _mixup(video, partner, mix_rng, mixup_alpha),
        lambda: _cutmix(video, partner, mix_rng, cutmix_alpha))
  elif mixup_alpha:
    mixed, lam = _mixup(video, partner, mix_rng, mixup_alpha)
  else:
    mixed, lam = _cutmix(video, partner, mix_rng, cutmix_alpha)
  return mixed, partner_index, lam
