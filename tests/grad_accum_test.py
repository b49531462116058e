"""Gradient accumulation: k micro-batches make the whole batch's update."""

import jax
import numpy as np
import pytest

from configs import videomae
from maxmicro import grad_accum
from maxmicro import models
from maxmicro import ops
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train


def test_micro_batches_are_strided_rows():
  batch = {'label': np.arange(8), 'video': np.arange(16).reshape(8, 2)}
  micro = grad_accum.split(batch, 2)
  np.testing.assert_array_equal(micro['label'], [[0, 2, 4, 6], [1, 3, 5, 7]])
  assert micro['video'].shape == (2, 4, 2)
  with pytest.raises(ValueError, match='grad_accum_steps=3'):
    grad_accum.split(batch, 3)


@pytest.mark.parametrize('steps, per_device', [(0, 4), (3, 4), (8, 4)])
def test_steps_that_do_not_divide_the_per_device_batch_are_refused(
    steps, per_device):
  with pytest.raises(ValueError, match='config.train.grad_accum_steps'):
    grad_accum.check_steps(steps, per_device)


def _vit_config():
  config = videomae.get_config('tiny')
  config.model.dropout_rate = 0.0
  config.model.drop_path_rate = 0.0
  config.train.global_batch_size = 8
  return config


def test_accumulated_gradients_equal_the_whole_batch():
  config = _vit_config()
  task = tasks.get_task(config)
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, models.input_shape(config, 8),
                                 dtype=np.uint8),
           'label': np.arange(8, dtype=np.int32)}
  params = {'model': models.build_model(config).init(
      jax.random.key(0), ops.normalise(batch['video']))['params']}
  whole = grad_accum.value_and_grad(task.loss_fn(), 1)
  accumulated = jax.jit(grad_accum.value_and_grad(task.loss_fn(), 4))
  (loss, (parts, _)), grads = whole(params, {}, batch, jax.random.key(1))
  (loss4, (parts4, _)), grads4 = accumulated(params, {}, batch,
                                             jax.random.key(1))
  # The cross-entropy is a mean over examples, so the mean of four equal
  # micro-batch means is the batch mean: only the float32 summation order
  # differs (a few ulps of the values summed).
  assert float(loss4) == pytest.approx(float(loss), rel=1e-6)
  assert float(parts4['accuracy']) == pytest.approx(float(parts['accuracy']))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads4)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_the_trainer_steps_once_per_accumulated_batch():
  config = _vit_config()
  config.train.grad_accum_steps = 2
  mesh = sharding.make_mesh()
  trainer = train.make_trainer(config, tasks.get_task(config), mesh,
                               num_train_examples=64)
  state = trainer.init_state(jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = sharding.global_batch(
      {'video': rng.integers(0, 256, models.input_shape(config, 8),
                             dtype=np.uint8),
       'label': np.arange(8, dtype=np.int32)}, mesh)
  state, metrics = trainer.jit_train_step()(state, batch, jax.random.key(1))
  assert int(state.step) == 1
  assert np.isfinite(float(metrics['loss']))
  config.train.grad_accum_steps = 3
  with pytest.raises(ValueError, match='grad_accum_steps=3'):
    train.make_trainer(config, tasks.get_task(config), mesh, 64)
