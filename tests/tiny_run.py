"""A tiny MANet trained once per test process on the fake MA-52.

`trained_workdir(built)` trains `configs/manet.py:tiny` for `NUM_STEPS` steps
(checkpoints every 2, a log line every step, validation at the end) and
returns the workdir; test modules share it through the cache.
"""

import contextlib
import functools
import tempfile

import jax
import pytest

from configs import manet
from maxmicro import train

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
