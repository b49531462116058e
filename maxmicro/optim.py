"""The optimizer: learning-rate schedule and MANet's parameter groups in Optax.

Parameter groups are those of mmaction2's `TSMOptimizerConstructor` with
`fc_lr5=True`, as the official MANet trains:

  group        what                               lr     weight decay
  weight       conv and Dense kernels             x1     yes
  bias         Dense biases                       x2 (*) no
  norm         BatchNorm scale and bias           x1     no
  lr5_weight   `fc_emb_t` kernel (fc_lr5)         x5     yes
  lr10_bias    `fc_emb_t` bias (fc_lr5)           x10    no
  label_vectors  learnable label vectors          x1     no
  no_decay     position tables, layer scales      x1     no
               (Swin's relative position bias tables)

A ViT's LayerNorm scales are `norm`, its biases (q and v biases included)
`bias`, as VideoMAE fine-tunes (no decay on 1-d parameters and `pos_embed`).

`fc_emb_t` is the last Linear layer in the official module order, which is
the one `fc_lr5` singles out. (*) The bias multiplier is
`config.optim.bias_lr_multiplier`: 2 in MANet's recipe, 1 in the detector's
(ActionFormer trains every parameter at one learning rate, with no weight
decay on biases and norm parameters). Gradients are clipped by their global
norm before weight decay (mmcv's `OptimizerHook` clips, then `SGD.step`
decays). A task may scale the learning rate of a whole module on top of its
groups (`module_multipliers`; end-to-end detection's backbone at x0.05):
its parameters then fall in groups named `<module>/<group>`. Layer-wise
decay (`config.optim.layer_decay` < 1, BEiT's and VideoMAE's rule) scales a
ViT's block i by decay^(depth - i), its embedding by decay^(depth + 1).

The learning rate is a function of the train step, passed to the update as
`tx.update(grads, opt_state, params, step=state.step)`, not of an optax
count kept in the optimizer state: a step skipped for NaN gradients restores
that state while the train step advances, and the schedule must follow the
train step (and be the learning rate the trainer logs).
"""

import jax
import jax.numpy as jnp
import optax

# The layer `fc_lr5` boosts: the last Linear layer in MANet's module order.
LR5_LAYER = 'fc_emb_t'
# name: (learning-rate multiplier, weight decay on); MANet's values, the bias
# multiplier replaced by `config.optim.bias_lr_multiplier` (`group_settings`).
GROUPS = {
    'weight': (1.0, True),
    'bias': (2.0, False),
    'norm': (1.0, False),
    'lr5_weight': (5.0, True),
    'lr10_bias': (10.0, False),
    'label_vectors': (1.0, False),
    'no_decay': (1.0, False),
}
# Parameters without weight decay outside norms and biases.
NO_DECAY_LEAVES = ('pos_embed', 'gamma_1', 'gamma_2',
                   'relative_position_bias_table')
BIAS_LEAVES = ('bias', 'q_bias', 'v_bias')
OPTIMIZERS = ('sgd', 'adamw')
SCHEDULES = ('step', 'cosine')


def peak_learning_rate(optim_config, global_batch_size):
  """Linear scaling: `base_learning_rate * global_batch / base_batch_size`."""
  return (optim_config.base_learning_rate * global_batch_size /
          optim_config.base_batch_size)


def make_schedule(optim_config, *, global_batch_size, steps_per_epoch,
                  total_steps):
  """The base-group learning rate as a function of the step.

  `step`: constant, times `decay_factor` at each of `decay_epochs` (mmcv's
  epoch-wise step policy). `cosine`: cosine decay to zero at `total_steps`.
  Either starts with a linear warmup over `warmup_epochs`, from
  `warmup_start_factor` times the peak (0: from zero).
  """
  peak = peak_learning_rate(optim_config, global_batch_size)
  warmup_steps = int(round(optim_config.warmup_epochs * steps_per_epoch))
  if optim_config.schedule == 'step':
    boundaries = {
        int(epoch * steps_per_epoch) - warmup_steps: optim_config.decay_factor
        for epoch in optim_config.decay_epochs
        if int(epoch * steps_per_epoch) > warmup_steps}
    main = optax.piecewise_constant_schedule(peak, boundaries)
  else:
    main = optax.cosine_decay_schedule(
        peak, decay_steps=max(total_steps - warmup_steps, 1))
  if not warmup_steps:
    return main
  warmup = optax.linear_schedule(optim_config.warmup_start_factor * peak,
                                 peak, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def parameter_group(path, fc_lr5=True):
  """The group name of the parameter at `path` (a tuple of dict keys).

  Paths look like `('model', 'backbone', 'layer1_0', 'bn1', 'scale')`;
  BatchNorm layers are the ones named `bn*` or `*_bn`.
  """
  if path[0] == 'label_vectors':
    return 'label_vectors'
  layer, leaf = path[-2], path[-1]
  if leaf in NO_DECAY_LEAVES:
    return 'no_decay'
  if leaf == 'scale' or layer.startswith('bn') or layer.endswith('_bn'):
    return 'norm'
  if fc_lr5 and layer == LR5_LAYER:
    return 'lr5_weight' if leaf == 'kernel' else 'lr10_bias'
  if leaf in BIAS_LEAVES:
    return 'bias'
  if leaf == 'kernel':
    return 'weight'
  raise ValueError(f'parameter {"/".join(path)} fits no parameter group.')


def parameter_groups(params, fc_lr5=True):
  """The tree of group names for a parameter tree (optax.multi_transform)."""
  def label(key_path, _):
    return parameter_group(tuple(k.key for k in key_path), fc_lr5)
  return jax.tree_util.tree_map_with_path(label, params)


def scale_by_step_learning_rate(schedule, multiplier=1.0):
  """Updates times `-multiplier * schedule(step)`, `step` an update argument.

  Stateless: `update(updates, state, params, *, step)` takes the train step,
  so the learning rate cannot drift from it. The arithmetic is that of
  `optax.scale_by_learning_rate(lambda count: multiplier * schedule(count))`
  at `count == step`, bit for bit.
  """
  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None, *, step=None, **extra_args):
    del params, extra_args
    if step is None:
      raise TypeError('this optimizer takes the train step: '
                      'tx.update(grads, opt_state, params, step=state.step).')
    step_size = -1 * (multiplier * schedule(step))
    return jax.tree.map(lambda g: jnp.array(step_size, dtype=g.dtype) * g,
                        updates), state

  return optax.GradientTransformationExtraArgs(init, update)


def _group_transform(optim_config, schedule, multiplier, decay):
  """One group: its update rule, weight decay, and scaled learning rate."""
  scaled = scale_by_step_learning_rate(schedule, multiplier)
  decayed = ([optax.add_decayed_weights(optim_config.weight_decay)]
             if decay and optim_config.weight_decay else [])
  if optim_config.name == 'sgd':
    # torch SGD: d = g + wd * p; buf = momentum * buf + d; p -= lr * buf.
    return optax.chain(*decayed, optax.trace(decay=optim_config.momentum),
                       scaled)
  # AdamW: decoupled decay, scaled by the learning rate like the update.
  return optax.chain(
      optax.scale_by_adam(b1=optim_config.momentum, b2=optim_config.adam_b2),
      *decayed, scaled)


def group_settings(optim_config):
  """`GROUPS` with the bias group's multiplier that `optim_config` asks for."""
  return {**GROUPS, 'bias': (optim_config.bias_lr_multiplier, False)}


def layer_depth(path, depth):
  """A ViT parameter's layer for layer-wise decay: 0 for the embedding,
  i + 1 for `blocks_i`, `depth + 1` for what follows (fc_norm, heads)."""
  if 'patch_embed' in path or path[-1] == 'pos_embed':
    return 0
  for key in path:
    if key.startswith('blocks_'):
      return int(key.removeprefix('blocks_')) + 1
  return depth + 1


def scale_by_layer_decay(decay):
  """Multiplies each update by decay^(depth + 1 - layer_depth): the learning
  rate (and the decoupled weight decay it scales) of lower blocks shrinks."""
  def factors(params):
    backbone = params['model'].get('backbone', {})
    depth = sum(key.startswith('blocks_') for key in backbone)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: decay ** (depth + 1 - layer_depth(
            tuple(k.key for k in path), depth)), params)

  def update(updates, state, params=None):
    scaled = jax.tree.map(lambda u, f: u * jnp.asarray(f, u.dtype), updates,
                          factors(params))
    return scaled, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update)


def scale_modules(groups, module_multipliers):
  """Group names under `groups['model'][module]` prefixed `module/`, for
  each module of `module_multipliers` (whose groups get their own lr).

  Raises:
    ValueError: a module is not at the top of the model's parameters.
  """
  if not module_multipliers:
    return groups
  model = dict(groups['model'])
  for module in module_multipliers:
    if module not in model:
      raise ValueError(f'no module {module!r} to scale the learning rate of; '
                       f'the model has {", ".join(sorted(model))}.')
    model[module] = jax.tree.map(lambda group: f'{module}/{group}',
                                 model[module])
  return {**groups, 'model': model}


def make_optimizer(optim_config, schedule, module_multipliers=None):
  """Global-norm clipping, then per-group SGD-momentum or AdamW.

  Args:
    optim_config: `config.optim`.
    schedule: the base-group learning rate of the step (`make_schedule`).
    module_multipliers: `{module: multiplier}` for modules at the top of the
      model's parameters (end-to-end detection's `backbone`): every group of
      their parameters gets its learning rate times the multiplier, weight
      decay as its group says (`scale_modules`).

  Returns:
    An `optax.GradientTransformationExtraArgs` over a trainable tree
    `{'model': params, ['label_vectors': (52, D)]}`, updated with
    `tx.update(grads, opt_state, params, step=train_step)`.
  """
  module_multipliers = module_multipliers or {}
  transforms = {
      name: _group_transform(optim_config, schedule, multiplier, decay)
      for name, (multiplier, decay) in group_settings(optim_config).items()}
  transforms.update({
      f'{module}/{name}': _group_transform(
          optim_config, schedule, scale * multiplier, decay)
      for module, scale in module_multipliers.items()
      for name, (multiplier, decay) in group_settings(optim_config).items()})
  clip = ([optax.clip_by_global_norm(optim_config.grad_clip_norm)]
          if optim_config.grad_clip_norm else [])
  layer_decay = ([scale_by_layer_decay(optim_config.layer_decay)]
                 if optim_config.layer_decay != 1.0 else [])
  return optax.chain(*clip, optax.multi_transform(
      transforms,
      lambda params: scale_modules(
          parameter_groups(params, optim_config.fc_lr5), module_multipliers)),
                     *layer_decay)
