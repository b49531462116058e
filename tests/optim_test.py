"""Parameter groups, learning-rate multipliers and schedules in optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import manet
from configs import mmad
from maxmicro import models
from maxmicro import optim
from maxmicro import train
from maxmicro import train_state


def _tiny_params():
  config = manet.get_config('tiny')
  model = models.build_model(config)
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 4, 32, 32, 3)), train=False))
  return {'model': variables['params']}


def _groups(fc_lr5=True):
  groups = optim.parameter_groups(_tiny_params(), fc_lr5)
  return {'/'.join(k.key for k in path): group for path, group in
          jax.tree_util.tree_flatten_with_path(groups)[0]}


def test_parameter_groups_of_manet():
  groups = _groups()
  assert groups['model/fc_emb_t/kernel'] == 'lr5_weight'
  assert groups['model/fc_emb_t/bias'] == 'lr10_bias'
  assert groups['model/fc_cls/kernel'] == 'weight'
  assert groups['model/fc_cls/bias'] == 'bias'
  assert groups['model/fc_emb/bias'] == 'bias'
  assert groups['model/backbone/conv1/kernel'] == 'weight'
  assert groups['model/backbone/bn1/scale'] == 'norm'
  assert groups['model/backbone/bn1/bias'] == 'norm'
  assert groups['model/backbone/layer2_0/downsample_bn/bias'] == 'norm'
  assert groups['model/backbone/layer1_0/mix/se/fc1/kernel'] == 'weight'
  assert set(groups.values()) == {'weight', 'bias', 'norm', 'lr5_weight',
                                  'lr10_bias'}
  plain = _groups(fc_lr5=False)
  assert plain['model/fc_emb_t/kernel'] == 'weight'
  assert plain['model/fc_emb_t/bias'] == 'bias'


def _optim_config(**overrides):
  config = manet.get_config().optim
  config.update(overrides)
  return config


@pytest.mark.parametrize('name', ['sgd', 'adamw'])
def test_group_learning_rates_and_decay(name):
  """One step from zero momentum: each group moves by its multiplier."""
  params = {'model': {
      'fc_cls': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
      'bn1': {'scale': jnp.ones(2), 'bias': jnp.ones(2)},
      'fc_emb_t': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}}
  grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
  learning_rate, weight_decay = 0.1, 0.01
  config = _optim_config(name=name, weight_decay=weight_decay,
                         grad_clip_norm=0.0)
  tx = optim.make_optimizer(config, lambda step: learning_rate)
  updates, _ = tx.update(grads, tx.init(params), params, step=0)
  updates = jax.device_get(updates['model'])
  # AdamW's first step normalises the gradient to 1 (up to eps).
  g = 0.5 if name == 'sgd' else 1.0
  expected = {  # (lr multiplier, decay)
      ('fc_cls', 'kernel'): (1, True), ('fc_cls', 'bias'): (2, False),
      ('bn1', 'scale'): (1, False), ('bn1', 'bias'): (1, False),
      ('fc_emb_t', 'kernel'): (5, True), ('fc_emb_t', 'bias'): (10, False)}
  for (layer, leaf), (multiplier, decay) in expected.items():
    step = g + (weight_decay if decay else 0.0)
    # SGD: float32 products of exact values; AdamW's first step is
    # g / (|g| + eps) = 1 - 2e-8: 1e-5 relative covers eps and rounding.
    np.testing.assert_allclose(updates[layer][leaf],
                               -learning_rate * multiplier * step, rtol=1e-5,
                               err_msg=f'{layer}/{leaf}')


def test_detector_recipe_has_one_learning_rate():
  """configs/mmad.py (ActionFormer's recipe): biases at the base learning
  rate like every other parameter, and without weight decay like norms."""
  params = {'model': {
      'head': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
      'bn1': {'scale': jnp.ones(2)}}}
  grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
  config = mmad.get_config().optim
  config.update(grad_clip_norm=0.0)
  tx = optim.make_optimizer(config, lambda step: 0.1)
  updates, _ = tx.update(grads, tx.init(params), params, step=0)
  updates = jax.device_get(updates['model'])
  # AdamW's first step normalises the gradient to 1 (up to eps).
  # g / (|g| + eps) and float32 products: 1e-5 covers eps and rounding.
  np.testing.assert_allclose(updates['head']['bias'], -0.1, rtol=1e-5)
  np.testing.assert_allclose(updates['bn1']['scale'], -0.1, rtol=1e-5)
  np.testing.assert_allclose(updates['head']['kernel'],
                             -0.1 * (1 + config.weight_decay), rtol=1e-5)


def test_gradients_clipped_by_global_norm_first():
  params = {'model': {'fc_cls': {'kernel': jnp.zeros((2,))}}}
  grads = {'model': {'fc_cls': {'kernel': jnp.array([30.0, 40.0])}}}  # 50
  config = _optim_config(weight_decay=0.0, grad_clip_norm=20.0)
  tx = optim.make_optimizer(config, lambda step: 1.0)
  updates, _ = tx.update(grads, tx.init(params), params, step=0)
  # Clipping scales by 20 / 50 in float32: a rounding (1e-6).
  np.testing.assert_allclose(updates['model']['fc_cls']['kernel'],
                             [-12.0, -16.0], rtol=1e-6)


def test_paper_step_schedule_scales_with_batch():
  config = _optim_config()  # 0.00125 at 10, x0.1 at epochs 30 and 60.
  schedule = optim.make_schedule(config, global_batch_size=40,
                                 steps_per_epoch=100, total_steps=8000)
  # 0.00125 * 40 / 10 in float64: exact to the default 1e-6.
  assert optim.peak_learning_rate(config, 40) == pytest.approx(0.005)
  for step, expected in [(0, 0.005), (2999, 0.005), (3000, 0.0005),
                         (5999, 0.0005), (6000, 0.00005), (7999, 0.00005)]:
    # optax evaluates the schedule in float32: a few ulps (1e-5).
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5), step


def test_cosine_schedule_with_warmup():
  config = _optim_config(schedule='cosine', warmup_epochs=1.0,
                         base_learning_rate=0.1, base_batch_size=10)
  schedule = optim.make_schedule(config, global_batch_size=10,
                                 steps_per_epoch=10, total_steps=110)
  assert float(schedule(0)) == 0.0
  # Float32 schedule values: the warm-up points and the cosine's midpoint to
  # a few ulps (the default 1e-6), its end 0 to an absolute ulp.
  assert float(schedule(5)) == pytest.approx(0.05)
  assert float(schedule(10)) == pytest.approx(0.1)
  assert float(schedule(60)) == pytest.approx(0.05)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)


def _toy_state(tx):
  params = {'model': {'fc_cls': {'kernel': jnp.zeros((3,))}}}
  return train_state.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
      opt_state=tx.init(params), nonfinite_steps=jnp.zeros((), jnp.int32),
      first_nonfinite_step=jnp.zeros((), jnp.int32))


def _linear_loss(params, batch_stats, batch, rng):
  """Gradient `batch['scale']` for each kernel entry (NaN: a bad step)."""
  del rng
  loss = batch['scale'] * jnp.sum(params['model']['fc_cls']['kernel'])
  return loss, ({}, batch_stats)


def test_schedule_follows_the_train_step_after_a_skipped_step():
  """Under nonfinite_policy='skip' the optimizer state of a bad step is
  restored while the step advances: the learning rate must still be
  `schedule(state.step)`, and be the one logged."""
  config = _optim_config(momentum=0.0, weight_decay=0.0, grad_clip_norm=0.0)
  schedule = optax.piecewise_constant_schedule(1.0, {2: 0.1, 3: 0.1})
  tx = optim.make_optimizer(config, schedule)
  step = jax.jit(lambda state, batch: train.train_step(
      state, batch, jax.random.key(0), loss_fn=_linear_loss, tx=tx,
      schedule=schedule))
  state = _toy_state(tx)
  applied, logged = [], []
  for scale in (1.0, float('nan'), 1.0, 1.0):  # Step 2 is skipped.
    before = np.asarray(state.params['model']['fc_cls']['kernel'])
    state, metrics = step(state, {'scale': jnp.float32(scale)})
    after = np.asarray(state.params['model']['fc_cls']['kernel'])
    applied.append(float(before[0] - after[0]))  # lr x gradient 1.
    logged.append(float(metrics['learning_rate']))
  assert int(state.nonfinite_steps) == 1
  # lr * gradient 1 in float32: a rounding (1e-6).
  np.testing.assert_allclose(applied, [1.0, 0.0, 0.1, 0.01], rtol=1e-6)
  np.testing.assert_allclose(logged, [1.0, 1.0, 0.1, 0.01], rtol=1e-6)


def _old_make_optimizer(optim_config, schedule):
  """The optimizer before the step became an update argument: learning
  rates from optax's own count (`scale_by_learning_rate`)."""
  def group(multiplier, decay):
    scaled = lambda count: multiplier * schedule(count)  # noqa: E731
    decayed = ([optax.add_decayed_weights(optim_config.weight_decay)]
               if decay and optim_config.weight_decay else [])
    if optim_config.name == 'sgd':
      return optax.chain(*decayed, optax.trace(decay=optim_config.momentum),
                         optax.scale_by_learning_rate(scaled))
    return optax.chain(
        optax.scale_by_adam(b1=optim_config.momentum, b2=optim_config.adam_b2),
        *decayed, optax.scale_by_learning_rate(scaled))
  transforms = {name: group(multiplier, decay)
                for name, (multiplier, decay) in optim.GROUPS.items()}
  return optax.chain(
      optax.clip_by_global_norm(optim_config.grad_clip_norm),
      optax.multi_transform(transforms, lambda params: optim.parameter_groups(
          params, optim_config.fc_lr5)))


@pytest.mark.parametrize('name', ['sgd', 'adamw'])
def test_same_numbers_as_optax_count_when_no_step_is_skipped(name):
  """Bit for bit the numbers of the count-based optimizer (the demo's
  figures do not move), through warmup and a decay boundary."""
  config = _optim_config(name=name, schedule='step', warmup_epochs=1.0,
                         decay_epochs=(2,), grad_clip_norm=1.0)
  schedule = optim.make_schedule(config, global_batch_size=10,
                                 steps_per_epoch=2, total_steps=6)
  rng = np.random.default_rng(0)
  shapes = {  # One or two of each parameter group.
      'model': {'conv1': {'kernel': (3, 3, 3, 4)},
                'bn1': {'scale': (4,), 'bias': (4,)},
                'fc_cls': {'kernel': (4, 5), 'bias': (5,)},
                'fc_emb_t': {'kernel': (4, 4), 'bias': (4,)}},
      'label_vectors': (5, 4)}
  params = jax.tree.map(
      lambda shape: jnp.asarray(rng.normal(size=shape), jnp.float32), shapes,
      is_leaf=lambda node: isinstance(node, tuple))
  new, old = (optim.make_optimizer(config, schedule),
              _old_make_optimizer(config, schedule))
  new_params, old_params = params, params
  new_state, old_state = new.init(params), old.init(params)
  new_update = jax.jit(lambda g, s, p, step: new.update(g, s, p, step=step))
  old_update = jax.jit(old.update)
  for step in range(6):
    grads = jax.tree.map(
        lambda leaf: jnp.asarray(rng.normal(size=leaf.shape), jnp.float32),
        params)
    new_updates, new_state = new_update(grads, new_state, new_params,
                                        jnp.int32(step))
    old_updates, old_state = old_update(grads, old_state, old_params)
    new_params = optax.apply_updates(new_params, new_updates)
    old_params = optax.apply_updates(old_params, old_updates)
    jax.tree.map(np.testing.assert_array_equal, new_params, old_params)
