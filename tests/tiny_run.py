"""A tiny MANet trained once per test process on the fake MA-52.

`trained_workdir(built)` trains `configs/manet.py:tiny` for `NUM_STEPS` steps
(checkpoints every 2, a log line every step, validation at the end) and
returns the workdir; test modules share it through the cache.
"""

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


def run(config, workdir, **kwargs):
  """`train_and_evaluate`, returning (result, logged lines)."""
  lines = []
  result = train.train_and_evaluate(config, workdir, log=lines.append,
                                    **kwargs)
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
