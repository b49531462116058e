"""A tiny MANet trained once per test process on the fake MA-52.

`trained_workdir(built)` trains `configs/manet.py:tiny` for `NUM_STEPS` steps
(checkpoints every 2, a log line every step, validation at the end) and
returns the workdir; test modules share it through the cache.
"""

import contextlib
import functools
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

from configs import manet
from configs import mmad
from maxmicro import checkpoint
from maxmicro import models
from maxmicro import train
from maxmicro.data import build
from maxmicro.data import synthetic
from tests import cpu_devices

NUM_STEPS = 4


@pytest.fixture(scope='module', autouse=False)
def fast_compile():
  """XLA with most optimisations off: compiles in a third of the time.

  Module-scoped and undone afterwards, so other modules' numerics are
  untouched. Import it into a test module to use it there.
  """
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


def tiny_config(built, **train_overrides):
  """The tiny config on the fake MA-52 (`built`: conftest's BuiltMa52)."""
  config = manet.get_config('tiny')
  for key, value in built.overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  config.train.num_train_steps = NUM_STEPS
  config.train.log_every_steps = 1
  config.train.checkpoint_every_steps = 2
  config.train.eval_every_epochs = None
  config.train.update(train_overrides)
  config.lock()
  return config


class _Stopped(Exception):
  """Raised in place of the step after `stop_at_step`."""


@contextlib.contextmanager
def _stopping_after(stop_at_step):
  """Makes the train loop stop after `stop_at_step` as a kill would: no save
  or evaluation of its own; what was saved before is committed."""
  if stop_at_step is None:
    yield
    return
  make_step = train.Trainer.jit_train_step

  def jit_train_step(self):
    step_fn = make_step(self)

    def step(state, batch, rng):
      if int(state.step) >= stop_at_step:
        raise _Stopped()
      return step_fn(state, batch, rng)
    return step
  train.Trainer.jit_train_step = jit_train_step
  try:
    yield
  finally:
    train.Trainer.jit_train_step = make_step


def run(config, workdir, stop_at_step=None):
  """`train_and_evaluate`, returning (result, logged lines).

  With `stop_at_step`, the run stops once that step has run (result None).
  """
  lines = []
  with _stopping_after(stop_at_step):
    try:
      result = train.train_and_evaluate(config, workdir, log=lines.append)
    except _Stopped:
      lines.append(f'stopped after step {stop_at_step}')
      result = None
  return result, lines


@functools.lru_cache(maxsize=None)
def _trained(data_dir, builder_config, manual_dir):
  class Built:  # What tiny_config reads of conftest's BuiltMa52.
    overrides = {'data.data_dir': data_dir,
                 'data.builder_config': builder_config}
  workdir = tempfile.mkdtemp(prefix='maxmicro_tiny_run_')
  result, lines = run(tiny_config(Built), workdir)
  return workdir, result, tuple(lines)


def trained_workdir(built):
  """`(workdir, final validation metrics, logged lines)` of the shared run."""
  return _trained(str(built.data_dir), built.builder_config,
                  str(built.manual_dir))


def run_py(*args, timeout=300):
  """`python run.py *args` on CPU with the tests' fast compile; returns the
  `subprocess.CompletedProcess` (text output captured, never raising)."""
  env = dict(os.environ, PYTHONPATH=cpu_devices.REPO_ROOT, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  return subprocess.run([sys.executable, 'run.py', *args],
                        cwd=cpu_devices.REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def tiny_backbone_variables():
  """The untrained tiny MANet's variables (the same on every call)."""
  backbone = manet.get_config('tiny')
  model = models.build_model(backbone)
  return model.init(jax.random.key(0),
                    np.zeros(models.input_shape(backbone), np.float32))


def build_tiny_mma52(root, classes):
  """A tiny fake MMA-52 of `classes` under `root`: videos in `raw/`, built
  as `mma52/small` in `tfds/`, and an untrained tiny backbone workdir in
  `backbone/`. Returns `root`."""
  synthetic.write_fake_mma52(
      root / 'raw', videos_per_split=(6, 3, 3), size=(40, 48),
      num_frames=(30, 60), instances_per_video=(1, 3), instance_frames=(8, 25),
      classes=list(classes), seed=0)
  build.prepare_mma52(root / 'raw', root / 'tfds', 'small',
                      num_decode_workers=1)
  checkpoint.save_variables(root / 'backbone', tiny_backbone_variables(),
                            manet.get_config('tiny'))
  return root


def tiny_mma52_config(root, classes):
  """configs/mmad.py on `build_tiny_mma52(root, classes)`: a tiny detector
  on the tiny backbone, short windows; unlocked, for the test to adjust."""
  config = mmad.get_config()
  config.data.data_dir = str(root / 'tfds')
  config.data.builder_config = 'small'
  config.model.update(num_levels=2, width=16, head_depth=1,
                      attention_window=None)
  config.detection.update(
      backbone_workdir=str(root / 'backbone'), window_size=8,
      eval_window_stride=4, max_instances=4, classes=tuple(classes),
      candidates_per_window=50, features_batch_size=4)
  config.optim.warmup_epochs = 0.0
  config.train.global_batch_size = 2
  config.eval.global_batch_size = 4
  return config
