"""The train state: everything that changes while a model trains."""

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """A pytree of arrays.

  `params` is the trainable tree `{'model': <model params>, ...}`; a task may
  train more than the model (recognition's learnable label vectors live at
  `params['label_vectors']`). `nonfinite_steps` counts the steps not applied
  because their loss or gradients were NaN or Inf; `first_nonfinite_step` is
  the first of them (0: none).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_steps: jax.Array
  first_nonfinite_step: jax.Array

  @property
  def variables(self):
    """The model's Flax variables (what `model.apply` takes)."""
    return {'params': self.params['model'], 'batch_stats': self.batch_stats}

  def with_variables(self, variables):
    """This state with the model's params and statistics replaced."""
    return self.replace(params={**self.params, 'model': variables['params']},
                        batch_stats=variables['batch_stats'])


def create_train_state(rng, *, model, tx, input_shape, extra_params=None):
  """A fresh state: initialised model, optimizer state, step 0.

  Args:
    rng: the initialisation key (also the dropout key of `init`).
    model: a linen module taking `(input, train=False)`.
    tx: the optax optimizer.
    input_shape: the shape of the model's float32 input.
    extra_params: more trainable arrays, kept beside `'model'` in `params`.
  """
  variables = model.init({'params': rng, 'dropout': rng},
                         jnp.zeros(input_shape, jnp.float32), train=False)
  params = {'model': variables['params']}
  params.update({name: jnp.asarray(value, jnp.float32)
                 for name, value in (extra_params or {}).items()})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    # A model without BatchNorm (the detector) has none.
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=tx.init(params),
                    nonfinite_steps=jnp.zeros((), jnp.int32),
                    first_nonfinite_step=jnp.zeros((), jnp.int32))


def state_to_items(state):
  """A `TrainState` as the checkpoint items `(variables, train)`.

  Arrays other than the model's parameters that a task trains (`params`
  beside `'model'`) go with the optimizer state into `train`.
  """
  extra_params = {name: value for name, value in state.params.items()
                  if name != 'model'}
  train = {'step': state.step, 'opt_state': state.opt_state,
           'nonfinite_steps': state.nonfinite_steps,
           'first_nonfinite_step': state.first_nonfinite_step,
           **extra_params}
  return state.variables, train


def state_from_items(variables, train):
  """The inverse of `state_to_items`."""
  train = dict(train)
  counters = {name: train.pop(name) for name in (
      'step', 'opt_state', 'nonfinite_steps', 'first_nonfinite_step')}
  return TrainState(
      params={'model': variables['params'], **train},
      batch_stats=variables['batch_stats'], **counters)
