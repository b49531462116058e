"""Orbax checkpoints of a workdir: `WORKDIR/checkpoints/<step>/<item>`.

Each step is one `ocp.args.Composite` of up to four items:
- `variables`: `{'params', 'batch_stats'}`, the model's Flax variables: all
  that evaluation, prediction and submission need;
- `train`: the step, optimizer state, non-finite counters and any other
  arrays a task trains (recognition's learnable `label_vectors`);
- `iterator`: the grain train iterator's state (one file per process);
- `config`: the run's config as JSON, so that eval, predict and submit can
  rebuild the model without the config file.

`train_state.state_to_items` and `state_from_items` are the one mapping
between a `TrainState` and these items; the resume policy is
`resume.restore_latest`.
`save_variables` writes `variables` and `config` alone (converted weights);
training from such a workdir starts from them with a fresh optimizer.

Arrays restore into abstract targets that carry the current shardings, so a
checkpoint saved on one mesh restores onto any other device count.

Faults: Orbax writes a step into `<step>.orbax-checkpoint-tmp*` and renames it
after writing `commit_success.txt` into it, so a save cut short leaves either
a tmp directory (ignored, then cleaned up) or, on file systems without atomic
rename, a step without the marker: `is_committed` tells them apart, and
readers skip uncommitted steps. `Saver` turns a failing save (a full disk)
into a `CheckpointError` naming the step and the last good one.
"""

import json
import os
import time

from absl import logging
from etils import epath

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

CHECKPOINT_SUBDIR = 'checkpoints'
# Orbax writes it into a step last, just before the step's commit.
COMMIT_MARKER = 'commit_success.txt'
ITEM_NAMES = ('variables', 'train', 'iterator', 'config')
# The name under which a step's evaluation score is stored (a storage name,
# kept for existing checkpoints): the trainer saves its task's `best_metric`
# under it, recognition's action top-1 or detection's mAP.
BEST_METRIC = 'action_top1'


class CheckpointError(Exception):
  """No usable checkpoint where one was asked for."""


class NoCheckpointError(CheckpointError):
  """A workdir without any checkpoint step."""


def checkpoint_dir(workdir):
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def make_manager(directory, *, keep=3, read_only=False):
  """A manager that keeps the last `keep` steps and the best evaluated one.

  The best is the step saved with the highest `metrics[BEST_METRIC]`, the
  task's best metric (steps saved between evaluations pass empty metrics).
  """
  # Steps saved between evaluations carry empty metrics and rank lowest.
  best = lambda metrics: metrics.get(BEST_METRIC, -1.0)  # noqa: E731
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep),
      checkpoint_managers.BestN(get_metric_fn=best, n=1),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=best, best_mode='max', preservation_policy=policy,
      # Readers never write or delete; Orbax's read-only mode refuses to
      # (and warns about any option that would).
      read_only=read_only, save_interval_steps=0 if read_only else 1,
      create=not read_only,
      # A writer removes the tmp directories of saves that a kill cut short.
      cleanup_tmp_directories=not read_only)
  if not read_only:
    return ocp.CheckpointManager(directory, options=options,
                                 item_names=ITEM_NAMES)
  # Orbax warns on every read-only open, before each mode's own output.
  absl_logger = logging.get_absl_logger()
  absl_logger.addFilter(_drop_read_only_notice)
  try:
    return ocp.CheckpointManager(directory, options=options,
                                 item_names=ITEM_NAMES)
  finally:
    absl_logger.removeFilter(_drop_read_only_notice)


def _drop_read_only_notice(record):
  return not record.getMessage().startswith('Given directory is read only')


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


def is_committed(manager, step):
  """Whether `step` was written to the end (it has Orbax's commit marker)."""
  return os.path.exists(os.path.join(manager.directory, str(step),
                                     COMMIT_MARKER))


def steps_newest_first(manager):
  return sorted(manager.all_steps(), reverse=True)


def set_aside(manager, step, why):
  """Renames a broken step to `<step>.<why>-<time>` so a new save can reuse
  its number; nothing is deleted. Returns the new path."""
  source = os.path.join(manager.directory, str(step))
  target = f'{source}.{why}-{int(time.time())}'
  os.rename(source, target)
  manager.reload()
  return target


def latest_committed_step(manager):
  """The newest step that was written to the end, warning about newer ones."""
  for step in steps_newest_first(manager):
    if is_committed(manager, step):
      return step
    logging.warning('checkpoint %s/%s is incomplete (no %s: a save was cut '
                    'short); skipping it.', manager.directory, step,
                    COMMIT_MARKER)
  return None


class Saver:
  """Saves steps through a manager and reports a failing save clearly.

  Orbax saves in the background, so a write that fails (no space left on the
  device, a lost mount) surfaces at the next `save` or at `wait`; either
  raises `CheckpointError` naming the failed step and the last committed
  one, which Orbax's atomic commit leaves intact.
  """

  def __init__(self, manager):
    self.manager = manager
    self._pending = None

  def save(self, step, **items):
    self.wait()  # Orbax waits for the previous save anyway; this names it.
    self._pending = step
    self._guard(lambda: save(self.manager, step, **items), step)

  def wait(self):
    if self._pending is not None:
      self._guard(self.manager.wait_until_finished, self._pending)
      self._pending = None

  def _guard(self, action, step):
    try:
      action()
    except Exception as error:  # Orbax and TensorStore raise many types.
      self._pending = None  # Reported once; `wait` after this is a no-op.
      good = latest_committed_step(self.manager)
      kept = (f'the last complete checkpoint, step {good}, is intact'
              if good is not None and good != step else
              'no earlier checkpoint exists')
      raise CheckpointError(
          f'saving checkpoint step {step} to {self.manager.directory} failed '
          f'({type(error).__name__}: {error}); training stopped and {kept}. '
          'Free space or fix the directory, then rerun the same command to '
          'resume.') from error


def has_item(manager, step, name):
  return os.path.isdir(os.path.join(manager.directory, str(step), name))


def restore(manager, step, *, variables=None, train=None, iterator=None):
  """Restores the named items of `step` into the given targets.

  `variables` and `train` are abstract trees (`jax.ShapeDtypeStruct` with
  shardings); `iterator` is a fresh grain iterator of the same pipeline,
  whose state is set in place. Returns a dict of the restored items.
  """
  items = {}
  # An empty collection (a ViT's batch_stats) is on disk as an empty entry
  # or not at all, depending on how the state was built; restore what is
  # there and put the empty ones back.
  empty = [name for name, tree in (variables or {}).items()
           if not jax.tree.leaves(tree)]
  if variables is not None:
    saved = set(ocp.StandardCheckpointHandler().metadata(
        epath.Path(manager.directory) / str(step) / 'variables').keys())
    items['variables'] = ocp.args.StandardRestore(
        {name: tree for name, tree in variables.items()
         if name in saved or name not in empty})
  if train is not None:
    items['train'] = ocp.args.StandardRestore(train)
  if iterator is not None:
    items['iterator'] = grain.checkpoint.CheckpointRestore(iterator)
  restored = dict(manager.restore(step, args=ocp.args.Composite(**items)))
  if variables is not None:
    restored['variables'] = {**{name: {} for name in empty},
                             **restored['variables']}
  return restored


def restore_saved_variables(manager, step):
  """`{'params', 'batch_stats'}` of `step` as saved: host numpy arrays.

  No abstract target, so no model trace: for one-device inference, where
  the model checks the shapes when it runs.
  """
  restored = manager.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore()))['variables']
  return {'params': restored['params'],
          'batch_stats': restored.get('batch_stats', {})}


# Recognition fields added after the first release, with the values that
# keep what a config saved without them meant: a workdir trained before
# them evaluates, predicts and submits as it did.
_ADDED_RECOGNITION_FIELDS = {
    'data.train_crop': 'multi_scale',
    'data.crop_area_range': (0.08, 1.0),
    'data.crop_aspect_range': (3 / 4, 4 / 3),
    'data.color_jitter': (0.0, 0.0, 0.0, 0.0),
    'data.erase_probability': 0.0,
    'data.erase_area_range': (0.02, 1 / 3),
    'data.mixup_alpha': 0.0,
    'data.cutmix_alpha': 0.0,
    'data.frame_interval': None,
    'model.family': 'resnet',
    'model.embedding_head': True,
    'optim.warmup_start_factor': 0.0,
    'optim.schedule_epochs': None,
    'optim.backbone_lr_multiplier': 1.0,
    'optim.layer_decay': 1.0,
    'train.grad_accum_steps': 1,
}


def read_config(manager, step):
  """The config saved with `step`, as a locked `ConfigDict`; fields a
  recognition config saved before they existed get their old meaning."""
  restored = manager.restore(step, args=ocp.args.Composite(
      config=ocp.args.JsonRestore()))
  config = ml_collections.ConfigDict(_tuples(restored['config']))
  if config.data.get('dataset', 'ma52') == 'ma52':
    for field, value in _ADDED_RECOGNITION_FIELDS.items():
      section, name = field.split('.')
      if section in config and name not in config[section]:
        config[section][name] = value
  config.lock()
  return config


def _tuples(tree):
  """JSON lists back to the tuples configs use."""
  if isinstance(tree, dict):
    return {key: _tuples(value) for key, value in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(value) for value in tree)
  return tree


def select_step(manager, which='latest'):
  """The step `which` names: 'latest', 'best' or a step number.

  Raises:
    CheckpointError: there is no such checkpoint; the message lists the
      steps there are.
  """
  steps = list(manager.all_steps())
  where = manager.directory
  if not steps:
    raise NoCheckpointError(f'no checkpoint in {where}.')
  if which == 'latest':
    step = latest_committed_step(manager)
    if step is None:
      raise CheckpointError(
          f'no complete checkpoint in {where}: every step there was cut '
          'short while saving.')
    return step
  if which == 'best':
    return manager.best_step()
  try:
    step = int(which)
  except ValueError:
    raise CheckpointError(f'checkpoint {which!r} is not latest, best or a '
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
    raise CheckpointError(f'workdir {workdir!r} does not exist.')
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
    workdir: the directory to create (without a checkpoint `step` yet).
    variables: `{'params', 'batch_stats'}` of `models.build_model(config)`.
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
