"""Orbax checkpoints of a workdir: `WORKDIR/checkpoints/<step>/<item>`.

Each step is one `ocp.args.Composite` of up to four items:
- `variables`: `{'params', 'batch_stats'}`, the model's Flax variables: all
  that evaluation, prediction and submission need;
- `train`: `{'step', 'opt_state'}` and, when they are trained, the
  `label_vectors`: what resuming training needs beyond the variables;
- `iterator`: the grain train iterator's state (one file per process);
- `config`: the run's config as JSON, so that eval, predict and submit can
  rebuild the model without the config file.

`save_variables` writes `variables` and `config` alone (for example from
converted PyTorch weights); training from such a workdir starts at its step
with those variables and a fresh optimizer.

Arrays restore into abstract targets that carry the current shardings, so a
checkpoint saved on one mesh restores onto any other device count.
"""

import json
import os

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

CHECKPOINT_SUBDIR = 'checkpoints'
ITEM_NAMES = ('variables', 'train', 'iterator', 'config')
BEST_METRIC = 'action_top1'


class CheckpointError(Exception):
  """No usable checkpoint where one was asked for."""


def checkpoint_dir(workdir):
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def make_manager(directory, *, keep=3, read_only=False):
  """A manager that keeps the last `keep` steps and the best by top-1.

  The best is the step saved with the highest `metrics['action_top1']`
  (steps saved between evaluations pass empty metrics).
  """
  # Steps saved between evaluations carry empty metrics and rank lowest.
  best = lambda metrics: metrics.get(BEST_METRIC, -1.0)  # noqa: E731
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep),
      checkpoint_managers.BestN(get_metric_fn=best, n=1),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=best, best_mode='max', preservation_policy=policy,
      # Readers open without orbax's read-only mode, which warns on every
      # open; they never save, so nothing is written or deleted.
      create=not read_only)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=ITEM_NAMES)


def config_to_json(config):
  return json.loads(config.to_json_best_effort())


def save(manager, step, *, variables, config, train=None, iterator=None,
         metrics=None):
  """Starts an asynchronous save of `step`; returns at once.

  `metrics`: `{'action_top1': ...}` at evaluations, else `{}`.

  The iterator state is read here, before this returns, so the caller may
  advance the iterator right away. Errors of the background write surface at
  the next `save` or at `manager.wait_until_finished()`.
  """
  metrics = {} if metrics is None else metrics
  items = {'variables': ocp.args.StandardSave(variables),
           'config': ocp.args.JsonSave(config_to_json(config))}
  if train is not None:
    items['train'] = ocp.args.StandardSave(train)
  if iterator is not None:
    items['iterator'] = grain.checkpoint.CheckpointSave(iterator)
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
               force=True)


def has_item(manager, step, name):
  return os.path.isdir(os.path.join(manager.directory, str(step), name))


def restore(manager, step, *, variables=None, train=None, iterator=None):
  """Restores the named items of `step` into the given targets.

  `variables` and `train` are abstract trees (`jax.ShapeDtypeStruct` with
  shardings); `iterator` is a fresh grain iterator of the same pipeline,
  whose state is set in place. Returns a dict of the restored items.
  """
  items = {}
  if variables is not None:
    items['variables'] = ocp.args.StandardRestore(variables)
  if train is not None:
    items['train'] = ocp.args.StandardRestore(train)
  if iterator is not None:
    items['iterator'] = grain.checkpoint.CheckpointRestore(iterator)
  return dict(manager.restore(step, args=ocp.args.Composite(**items)).items())


def read_config(manager, step):
  """The config saved with `step`, as a locked `ConfigDict`."""
  restored = manager.restore(step, args=ocp.args.Composite(
      config=ocp.args.JsonRestore()))
  config = ml_collections.ConfigDict(_tuples(restored['config']))
  config.lock()
  return config


def _tuples(tree):
  """JSON lists back to the tuples configs use."""
  if isinstance(tree, dict):
    return {key: _tuples(value) for key, value in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(value) for value in tree)
  return tree


def resolve_config(saved, override=None):
  """The config eval, predict and submit use: `override` if given, else saved.

  Raises:
    ValueError: `override` builds a different model than the checkpoint
      holds; the message names the differing fields.
  """
  if override is None:
    return saved
  saved_model = config_to_json(saved)['model']
  new_model = config_to_json(override)['model']
  differing = sorted(key for key in set(saved_model) | set(new_model)
                     if saved_model.get(key) != new_model.get(key))
  if differing:
    raise ValueError(
        'the --config model differs from the checkpoint\'s in ' +
        ', '.join(f'model.{key} ({new_model.get(key)!r} vs saved '
                  f'{saved_model.get(key)!r})' for key in differing) +
        '; leave --config out to use the saved config.')
  return override


def select_step(manager, which='latest'):
  """The step `which` names: 'latest', 'best' or a step number.

  Raises:
    CheckpointError: there is no such checkpoint; the message lists the
      steps there are.
  """
  steps = list(manager.all_steps())
  where = manager.directory
  if not steps:
    raise CheckpointError(
        f'no checkpoint in {where}: train first (python run.py '
        '--config=configs/demo.py --workdir=WORKDIR) or write one from '
        'converted weights (maxmicro.checkpoint.save_variables).')
  if which == 'latest':
    return manager.latest_step()
  if which == 'best':
    return manager.best_step()
  try:
    step = int(which)
  except ValueError:
    raise CheckpointError(f'--checkpoint={which!r} is not latest, best or a '
                          'step number.') from None
  if step not in steps:
    raise CheckpointError(f'no checkpoint of step {step} in {where}; there '
                          f'are steps {", ".join(map(str, sorted(steps)))}.')
  return step


def open_for_reading(workdir, which='latest'):
  """Finds a workdir's checkpoint for eval, predict or submit.

  Args:
    workdir: a workdir (holding `checkpoints/`) or a checkpoints directory.
    which: 'latest', 'best' or a step number.

  Returns:
    `(manager, step, config)`, the config being the one saved with the step.

  Raises:
    CheckpointError: no workdir, no checkpoint, or not the asked one.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(f'workdir {workdir!r} does not exist (--workdir).')
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    directory = os.path.abspath(workdir)
  manager = make_manager(directory, read_only=True)
  step = select_step(manager, which)
  if not has_item(manager, step, 'variables'):
    raise CheckpointError(f'checkpoint {directory}/{step} has no model '
                          'variables; it is not a maxmicro checkpoint.')
  return manager, step, read_config(manager, step)


def save_variables(workdir, variables, config, step=0):
  """Writes a workdir from bare model variables (e.g. converted weights).

  Args:
    workdir: the directory to create (its `checkpoints/` must not hold
      `step` yet).
    variables: `{'params': ..., 'batch_stats': ...}` of
      `models.build_model(config)`, numpy or jax arrays.
    config: the config the variables belong to (saved with them).
    step: the step number to file them under.

  Returns:
    The checkpoint directory written.
  """
  directory = checkpoint_dir(workdir)
  manager = make_manager(directory)
  try:
    save(manager, step, variables=jax.tree.map(lambda x: x, dict(variables)),
         config=config)
    manager.wait_until_finished()
  finally:
    manager.close()
  return directory
