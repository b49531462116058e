"""The temporal shift does its job: it makes motion direction learnable.

Each clip rolls one random texture by a fixed step per frame in one of four
directions from a random start. Every single frame is a uniformly rolled
random texture whatever the class, so a per-frame model (TSN) cannot beat
chance, while the same model with the shift (TSM) can compare neighbouring
frames and learns the direction.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import tsm
from maxmicro import models

NUM_SEGMENTS = 4
SIZE = 32
STEP_PIXELS = 4
DIRECTIONS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])


def moving_texture_clips(rng, num_clips):
  """`(N, T, S, S, 3)` float32 clips and `(N,)` direction labels."""
  labels = rng.integers(0, len(DIRECTIONS), num_clips)
  textures = rng.normal(size=(num_clips, SIZE, SIZE, 3))
  # A 3x3 circular box blur gives the texture structure a few pixels wide.
  textures = sum(np.roll(textures, (dy, dx), axis=(1, 2))
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 3
  starts = rng.integers(0, SIZE, (num_clips, 2))
  clips = np.stack([
      np.stack([np.roll(texture,
                        tuple(start + direction * STEP_PIXELS * frame),
                        axis=(0, 1)) for frame in range(NUM_SEGMENTS)])
      for texture, start, direction in zip(textures, starts,
                                           DIRECTIONS[labels])])
  return clips.astype(np.float32), labels


def train_and_score(use_shift, steps=150, batch_size=16):
  config = tsm.get_config('tiny')
  config.model.use_shift = use_shift
  config.model.num_classes = len(DIRECTIONS)
  model = models.build_model(config)
  rng = np.random.default_rng(0)
  variables = model.init({'params': jax.random.key(0)},
                         jnp.zeros((1, NUM_SEGMENTS, SIZE, SIZE, 3)))
  optimizer = optax.adam(3e-3)
  params, batch_stats = variables['params'], variables['batch_stats']
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, batch_stats, opt_state, video, labels):
    def loss_fn(params):
      outputs, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, video, train=True,
          mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(
          outputs['action_logits'], labels).mean()
      return loss, updates['batch_stats']
    grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state

  for _ in range(steps):
    params, batch_stats, opt_state = step(
        params, batch_stats, opt_state, *moving_texture_clips(rng, batch_size))
  video, labels = moving_texture_clips(np.random.default_rng(1), 256)
  logits = model.apply({'params': params, 'batch_stats': batch_stats},
                       video)['action_logits']
  return float(np.mean(np.argmax(logits, -1) == labels))


def test_single_frames_carry_no_class_information():
  # The premise: per-pixel statistics of frame t are the same for all
  # classes (mean image within noise of the global one).
  video, labels = moving_texture_clips(np.random.default_rng(2), 2000)
  for frame in (0, NUM_SEGMENTS - 1):
    class_means = [video[labels == c, frame].mean() for c in range(4)]
    # A statistical bound, not rounding: a class mean averages ~500 texture
    # means (std 0.055), a standard error of 0.0025; 0.02 is ~8 of them.
    assert np.ptp(class_means) < 0.02


def test_tsm_learns_motion_direction_and_tsn_cannot():
  tsm_accuracy = train_and_score(use_shift=True)
  tsn_accuracy = train_and_score(use_shift=False)
  # Chance is 0.25 (256 test clips: one standard error is about 0.027).
  assert tsm_accuracy > 0.8, (tsm_accuracy, tsn_accuracy)
  assert tsn_accuracy < 0.4, (tsm_accuracy, tsn_accuracy)
