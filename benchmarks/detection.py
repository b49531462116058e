r"""Throughput of MMA-52 detection: feature extraction and the detector step.

  PYTHONPATH=. python benchmarks/detection.py            # the demo's sizes
  PYTHONPATH=. python benchmarks/detection.py --full     # MANet-R50, mmad.py

Feature extraction: `features.make_feature_fn` (the backbone trunk on clips
of T frames, per-frame pooled outputs) on random uint8 clips already in
memory, so JPEG decoding is not counted; clips/s, a clip being T frames.
Detector: the real `train.train_step` with the detection task's loss (target
assignment in the step, focal + DIoU), AdamW with maxmicro's parameter
groups, on random windows already on the device; steps/s. Random weights:
the speed does not depend on them. Each is timed after 2 warm-up calls, as
the median of `--repeats` rounds of `--steps` calls.
"""

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import manet  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import mmad  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import mmad_demo  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import models  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import optim  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import train  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import train_state  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro.detection import features  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro.tasks import detection  # noqa: E402  pylint: disable=g-import-not-at-top


def timed(call, steps, repeats):
  """Median seconds per call over `repeats` rounds of `steps` calls."""
  for _ in range(2):
    jax.block_until_ready(call())
  rounds = []
  for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(steps):
      out = call()
    jax.block_until_ready(out)
    rounds.append((time.perf_counter() - started) / steps)
  return statistics.median(rounds)


def extraction(backbone_config, batch_size, steps, repeats):
  """Clips per second of the feature function."""
  fn = features.make_feature_fn(backbone_config, batch_size)
  model = models.build_model(backbone_config)
  variables = model.init(jax.random.key(0), np.zeros(
      models.input_shape(backbone_config), np.float32))
  trunk = {key: value['backbone'] for key, value in variables.items()}
  size = backbone_config.data.image_size
  clips = np.random.default_rng(0).integers(0, 255, (
      batch_size, backbone_config.model.num_segments, size, size, 3),
                                            dtype=np.uint8)
  seconds = timed(lambda: fn(trunk, clips), steps, repeats)
  return batch_size / seconds, features.feature_dim(backbone_config)


def detector_step(config, feature_dim, steps, repeats):
  """Steps per second of the detector's train step."""
  task = detection.Detection(config)
  batch_size = config.train.global_batch_size
  length, count = config.detection.window_size, config.detection.max_instances
  schedule = optim.make_schedule(config.optim, global_batch_size=batch_size,
                                 steps_per_epoch=100, total_steps=10_000)
  tx = optim.make_optimizer(config.optim, schedule)
  state = train_state.create_train_state(
      jax.random.key(0), model=task.model, tx=tx,
      input_shape=(1, length, feature_dim))
  rng = np.random.default_rng(0)
  starts = rng.uniform(0, length - 8, (batch_size, count))
  batch = {
      'features': rng.normal(size=(batch_size, length, feature_dim)).astype(
          np.float32),
      'mask': np.ones((batch_size, length), bool),
      'segments': np.stack([starts, starts + rng.uniform(
          2, length / 2, starts.shape)], axis=-1).astype(np.float32),
      'labels': rng.integers(0, len(task.classes), (batch_size, count),
                             dtype=np.int32),
      'valid': np.arange(count)[None].repeat(batch_size, 0) < 3}
  step = jax.jit(functools.partial(train.train_step, loss_fn=task.loss_fn(),
                                   tx=tx, schedule=schedule))
  key = jax.random.key(1)
  holder = [state]

  def call():
    holder[0], metrics = step(holder[0], batch, key)
    return metrics['loss']
  return 1 / timed(call, steps, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--full', action='store_true',
                      help='MANet-R50 224x224 T=8 and configs/mmad.py.')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  if args.full:
    backbone, config, batch = manet.get_config(), mmad.get_config(), 2
  else:
    backbone, config, batch = demo.get_config(), mmad_demo.get_config(), 16
  clips_per_second, width = extraction(backbone, batch, args.steps,
                                       args.repeats)
  frames = backbone.model.num_segments
  print(f'{jax.devices()[0].device_kind}: feature extraction '
        f'{clips_per_second:.1f} clips/s ({clips_per_second * frames:.0f} '
        f'frames/s; batch {batch} clips of {backbone.model.num_segments} '
        f'frames at {backbone.data.image_size}x{backbone.data.image_size}, '
        f'features of width {width})')
  steps_per_second = detector_step(config, width, args.steps, args.repeats)
  print(f'{jax.devices()[0].device_kind}: detector train step '
        f'{steps_per_second:.1f} steps/s (batch '
        f'{config.train.global_batch_size} windows of '
        f'{config.detection.window_size} steps, width {config.model.width}, '
        f'{config.model.num_levels} levels)')


if __name__ == '__main__':
  main()
