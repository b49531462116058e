"""Training MANet: the train state, the jitted step, and the loop.

Read top to bottom: helpers, `create_train_state`, `train_step`, then
`train_and_evaluate(config, workdir)`, which builds the mesh, restores or
initialises the state, trains, evaluates on validation every
`config.train.eval_every_epochs` and at the end, and checkpoints.

Faults (see README "Faults"): SIGTERM saves the step and raises
`preemption.Preempted`; a step with a NaN or Inf loss or gradient is never
applied, and `config.train.nonfinite_policy` stops the run naming it or skips
it; no checkpoint is saved after a non-finite step under 'stop'; a save that
fails raises `checkpoint.CheckpointError`; resuming skips checkpoints that a
kill cut short and falls back to the last complete one.
"""

import dataclasses
import functools
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import evaluate
from maxmicro import losses
from maxmicro import models
from maxmicro import optim
from maxmicro import preemption
from maxmicro import prepare
from maxmicro import reporting
from maxmicro import sharding
from maxmicro import xla_options
from maxmicro.data import pipeline


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of arrays.

  `params` is the trainable tree `{'model': <model params>}`, plus
  `'label_vectors'` (52, D) when `config.loss.learnable_label_vectors`.
  `nonfinite_steps` counts the steps not applied because their loss or
  gradients were NaN or Inf; `first_nonfinite_step` is the first (0: none).
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


def input_shape(config, batch_size=1):
  """`(N, T, S, S, 3)`, the model's input."""
  size = config.data.image_size
  return (batch_size, config.model.num_segments, size, size, 3)


def create_train_state(rng, *, model, tx, video_shape, label_vectors=None):
  """A fresh state: initialised model, optimizer state, step 0.

  `label_vectors`, when given, become trainable (`params['label_vectors']`).
  """
  variables = model.init({'params': rng, 'dropout': rng},
                         jnp.zeros(video_shape, jnp.float32), train=False)
  params = {'model': variables['params']}
  if label_vectors is not None:
    params['label_vectors'] = jnp.asarray(label_vectors, jnp.float32)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables['batch_stats'],
                    opt_state=tx.init(params),
                    nonfinite_steps=jnp.zeros((), jnp.int32),
                    first_nonfinite_step=jnp.zeros((), jnp.int32))


def train_step(state, batch, rng, *, model, tx, schedule, loss_config,
               label_vectors):
  """One optimizer step on a global batch.

  Args:
    state: `TrainState` (donated).
    batch: `video` uint8 `(B, T, S, S, 3)` and `label` int32 `(B,)`.
    rng: the run's base key; this step's key is `fold_in(rng, state.step)`,
      so a resumed run draws the same dropout masks.
    model, tx, schedule, loss_config: bound with `functools.partial`.
    label_vectors: fixed `(52, D)` vectors, or None (learnable ones live in
      `state.params`, or the loss has no embedding term).

  Returns:
    `(state, metrics)`: metrics are scalars (loss and its parts, grad norm,
    learning rate, batch accuracy, and the non-finite step counters). A step
    whose loss or gradient norm is NaN or Inf advances `step` and the
    counters only: parameters, statistics and optimizer state stay the last
    good ones.
  """
  rng = jax.random.fold_in(rng, state.step)
  video = evaluate.normalise(batch['video'])
  labels = batch['label']

  def loss_fn(params):
    outputs, updates = model.apply(
        {'params': params['model'], 'batch_stats': state.batch_stats},
        video, train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    vectors = params.get('label_vectors', label_vectors)
    loss, parts = losses.compute_loss(outputs, labels, vectors, loss_config)
    return loss, (parts, updates['batch_stats'], outputs['action_logits'])

  (loss, (parts, batch_stats, logits)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep_if_bad = functools.partial(jax.tree.map,
                                  lambda new, old: jnp.where(finite, new, old))
  step = state.step + 1
  new_state = state.replace(
      step=step,
      params=keep_if_bad(params, state.params),
      batch_stats=keep_if_bad(batch_stats, state.batch_stats),
      opt_state=keep_if_bad(opt_state, state.opt_state),
      nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
      first_nonfinite_step=jnp.where(
          (state.first_nonfinite_step == 0) & ~finite, step,
          state.first_nonfinite_step))
  metrics = {
      'loss': loss, **parts,
      'grad_norm': grad_norm,
      'learning_rate': schedule(state.step),
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
      'nonfinite_steps': new_state.nonfinite_steps,
      'first_nonfinite_step': new_state.first_nonfinite_step,
  }
  return new_state, metrics


@dataclasses.dataclass
class Trainer:
  """The pieces of a run that do not change while it trains."""
  config: Any
  mesh: Any
  model: Any
  tx: Any
  schedule: Any
  label_vectors: Any  # numpy (52, D) or None.
  steps_per_epoch: int
  total_steps: int
  abstract_state: Any
  state_shardings: Any

  @property
  def learnable_vectors(self):
    return (self.config.loss.learnable_label_vectors and
            self.label_vectors is not None)

  def init_state(self, rng):
    """A fresh state, created on the devices that hold it."""
    init = functools.partial(
        create_train_state, model=self.model, tx=self.tx,
        video_shape=input_shape(self.config),
        label_vectors=self.label_vectors if self.learnable_vectors else None)
    return jax.jit(init, out_shardings=self.state_shardings)(rng)

  def jit_train_step(self):
    fixed_vectors = (None if self.learnable_vectors or
                     self.label_vectors is None
                     else jnp.asarray(self.label_vectors))
    step = functools.partial(
        train_step, model=self.model, tx=self.tx, schedule=self.schedule,
        loss_config=self.config.loss, label_vectors=fixed_vectors)
    return jax.jit(
        step,
        in_shardings=(self.state_shardings, sharding.batch_sharding(self.mesh),
                      sharding.replicated(self.mesh)),
        out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
        donate_argnums=(0,), compiler_options=xla_options.compiler_options())


def make_trainer(config, mesh, num_train_examples):
  """Validates the config and builds model, optimizer and abstract state."""
  losses.validate_loss_config(config.loss)
  global_batch = config.train.global_batch_size
  sharding.check_batch_size(global_batch, mesh)
  steps_per_epoch = num_train_examples // global_batch
  if not steps_per_epoch:
    raise ValueError(
        f'config.train.global_batch_size={global_batch} is larger than the '
        f'{num_train_examples} training videos.')
  total_steps = (config.train.num_train_steps or
                 int(config.train.num_epochs * steps_per_epoch))
  schedule = optim.make_schedule(
      config.optim, global_batch_size=global_batch,
      steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  tx = optim.make_optimizer(config.optim, schedule)
  model = models.build_model(config)
  label_vectors = None
  if config.loss.embedding != 'none':
    label_vectors = losses.load_label_vectors(config.loss.label_vectors,
                                              config.model.embedding_dim)
  trainer = Trainer(config=config, mesh=mesh, model=model, tx=tx,
                    schedule=schedule, label_vectors=label_vectors,
                    steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                    abstract_state=None, state_shardings=None)
  trainer.abstract_state = jax.eval_shape(
      functools.partial(
          create_train_state, model=model, tx=tx,
          video_shape=input_shape(config),
          label_vectors=label_vectors if trainer.learnable_vectors else None),
      jax.random.key(0))
  trainer.state_shardings = sharding.state_shardings(
      trainer.abstract_state, mesh, config.train.fsdp)
  return trainer


def _checkpoint_items(state):
  """A state as checkpoint items `variables` and `train`."""
  train = {'step': state.step, 'opt_state': state.opt_state,
           'nonfinite_steps': state.nonfinite_steps,
           'first_nonfinite_step': state.first_nonfinite_step}
  if 'label_vectors' in state.params:
    train['label_vectors'] = state.params['label_vectors']
  return state.variables, train


def restore_or_init(trainer, manager, iterator, rng, log):
  """The state to start from, and whether the iterator was restored.

  Resume order: the latest complete checkpoint of this workdir (all of it,
  or only its variables if it has no optimizer state, as `save_variables`
  writes); else `config.init_from` backbone weights; else a fresh
  initialisation. A newer step that a kill cut short (no commit marker), or
  one that fails to restore while an older one restores, is renamed aside
  with a warning; if every step fails the first error is raised, so a config
  that no longer fits its checkpoints never silently restarts from scratch.
  """
  abstract = sharding.with_shardings(trainer.abstract_state,
                                     trainer.state_shardings)
  unreadable = []  # (step, error) of committed steps that failed.
  for step in checkpoint.steps_newest_first(manager):
    if not checkpoint.is_committed(manager, step):
      aside = checkpoint.set_aside(manager, step, 'incomplete')
      log(f'warning: checkpoint step {step} is incomplete (a save was cut '
          f'short); moved it to {aside} and looking at older steps')
      continue
    try:
      state, restored_iterator = _restore_step(trainer, manager, step,
                                               abstract, iterator, rng, log)
    except Exception as error:  # pylint: disable=broad-exception-caught
      # Orbax and TensorStore raise many types for a damaged file.
      log(f'warning: checkpoint step {step} does not restore '
          f'({type(error).__name__}: {error}); trying older steps')
      unreadable.append((step, error))
      continue
    for bad_step, _ in unreadable:
      aside = checkpoint.set_aside(manager, bad_step, 'unreadable')
      log(f'warning: moved unreadable checkpoint step {bad_step} to {aside}')
    return state, restored_iterator
  if unreadable:
    step, error = unreadable[0]
    raise checkpoint.CheckpointError(
        f'no checkpoint in {manager.directory} restores into this config; '
        f'step {step} fails with {type(error).__name__}: {error}') from error
  state = trainer.init_state(rng)
  if trainer.config.init_from:
    from maxmicro import convert  # pylint: disable=g-import-not-at-top
    log(f'initialising the backbone from {trainer.config.init_from}')
    variables = convert.load_backbone_init(
        trainer.config.init_from, jax.device_get(state.variables),
        trainer.config)
    placed = jax.device_put(
        variables, _checkpoint_items(trainer.state_shardings)[0])
    state = state.replace(params={**state.params, 'model': placed['params']},
                          batch_stats=placed['batch_stats'])
  return state, False


def _restore_step(trainer, manager, step, abstract, iterator, rng, log):
  """The state (and iterator) of checkpoint `step`; see `restore_or_init`."""
  abstract_variables, abstract_train = _checkpoint_items(abstract)
  if checkpoint.has_item(manager, step, 'train'):
    restore_iterator = checkpoint.has_item(manager, step, 'iterator')
    restored = checkpoint.restore(
        manager, step, variables=abstract_variables, train=abstract_train,
        iterator=iterator if restore_iterator else None)
    log(f'resuming from step {step}')
    variables, train = restored['variables'], restored['train']
    params = {'model': variables['params']}
    if 'label_vectors' in train:
      params['label_vectors'] = train['label_vectors']
    return TrainState(
        step=train['step'], params=params,
        batch_stats=variables['batch_stats'], opt_state=train['opt_state'],
        nonfinite_steps=train['nonfinite_steps'],
        first_nonfinite_step=train['first_nonfinite_step']), restore_iterator
  variables = checkpoint.restore(manager, step,
                                 variables=abstract_variables)['variables']
  log(f'starting from the variables of checkpoint step {step} '
      '(no optimizer state in it)')
  state = trainer.init_state(rng)
  return state.replace(params={**state.params, 'model': variables['params']},
                       batch_stats=variables['batch_stats']), False


def _check_finite(step, scalars, policy='stop', last_saved=None):
  """Under the 'stop' policy, raises FloatingPointError naming the first
  step whose loss or gradients were NaN or Inf.

  `scalars` are fetched step metrics; the state's `first_nonfinite_step`
  names a bad step between two fetches. The loop calls this before every
  evaluation and save, so no checkpoint follows a non-finite step.
  """
  if policy != 'stop':
    return
  first = int(scalars.get('first_nonfinite_step', 0))
  bad = [f'{name} is {scalars[name]}' for name in ('loss', 'grad_norm')
         if not np.isfinite(scalars[name])]
  if not bad and not first:
    return
  what = (', '.join(bad) if bad and first in (0, step) else
          'the loss or gradients were NaN or Inf')
  kept = ('the last good checkpoint is kept in the workdir'
          if last_saved is None else
          f'the last good checkpoint, step {last_saved}, is kept')
  raise FloatingPointError(
      f'{what} at step {first or step}: training diverged and stopped '
      f'({kept}). Lower config.optim.base_learning_rate or check the data, '
      'or set --config.train.nonfinite_policy=skip to skip such steps.')


def run_evaluation(trainer, state, step, writer, workdir, log):
  """Evaluates on `config.data.eval_split`; writes the line and the report."""
  config = trainer.config
  split = config.data.eval_split
  iterator = evaluate.eval_iterator(config, split, trainer.mesh)
  variables_shardings = _checkpoint_items(trainer.state_shardings)[0]
  score_fn = evaluate.make_score_fn(trainer.model, config.model.num_segments,
                                    trainer.mesh, variables_shardings)
  metrics, predictions = evaluate.evaluate(score_fn, state.variables,
                                           iterator, trainer.mesh)
  writer.write_eval(step, split, metrics, len(predictions.labels))
  reporting.write_eval_report(workdir, split, step, metrics, predictions)
  log(f'{split} at step {step} ({len(predictions.labels)} videos): ' +
      ', '.join(f'{k} {100 * v:.2f}' for k, v in metrics.items()))
  return metrics


def train_and_evaluate(config, workdir, *, stop_at_step=None, log=print):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Args:
    config: a locked config from `configs/`.
    workdir: where checkpoints, `metrics.jsonl`, TensorBoard files and
      evaluation reports go.
    stop_at_step: stop after this step as a preemption would (no final
      save or evaluation); for tests of resumption.
    log: prints a line (process 0 only).

  Returns:
    The last validation metrics, or None if no evaluation ran.
  """
  log = log if jax.process_index() == 0 else (lambda *_: None)
  # Bad values first, then a missing dataset (a check, nothing read), then
  # the files the run loads, all before the demo's data is built or read.
  config_checks.check_fields(config)
  if config.synthetic_data is None:
    prepare.ensure_dataset(config, log)  # Only checks: MA-52 is built by hand.
  config_checks.check_files(config)
  if config.synthetic_data is not None:
    prepare.ensure_dataset(config, log)  # Writes and builds the demo's data.
  mesh = sharding.make_mesh()
  num_train = pipeline.num_examples(config.data, config.data.train_split)
  trainer = make_trainer(config, mesh, num_train)
  global_batch = config.train.global_batch_size
  log(f'process {jax.process_index()}/{jax.process_count()}: '
      f'{mesh.size} devices ({jax.devices()[0].platform}), {num_train} '
      f'training videos, {trainer.steps_per_epoch} steps per epoch, '
      f'{trainer.total_steps} steps, global batch {global_batch}')

  iterator = pipeline.make_train_iterator(
      config.data, num_segments=config.model.num_segments,
      per_process_batch_size=global_batch // jax.process_count(),
      seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count())
  manager = checkpoint.make_manager(checkpoint.checkpoint_dir(workdir),
                                    keep=config.train.keep_checkpoints)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state, _ = restore_or_init(trainer, manager, iterator, init_rng, log)
  start_step = int(jax.device_get(state.step))
  if start_step >= trainer.total_steps:
    log(f'training already finished at step {start_step} of '
        f'{trainer.total_steps}; nothing to do.')
    manager.close()
    return None

  p_train_step = trainer.jit_train_step()
  writer = reporting.MetricWriter(workdir)
  progress = reporting.Progress(
      start_step=start_step, total_steps=trainer.total_steps,
      steps_per_epoch=trainer.steps_per_epoch, global_batch_size=global_batch)
  eval_every = int(round((config.train.eval_every_epochs or 0) *
                         trainer.steps_per_epoch))
  policy = config.train.nonfinite_policy
  saver = checkpoint.Saver(manager)
  last_saved = manager.latest_step()
  nonfinite_seen = int(jax.device_get(state.nonfinite_steps))
  last_metrics = None
  try:
    with preemption.Watcher() as watcher:
      for step in range(start_step + 1, trainer.total_steps + 1):
        started = time.perf_counter()
        local_batch = next(iterator)
        progress.add_data_time(time.perf_counter() - started)
        batch = sharding.global_batch(
            {'video': local_batch['video'], 'label': local_batch['label']},
            mesh)
        state, step_metrics = p_train_step(state, batch, step_rng)
        if step == start_step + 1:
          jax.block_until_ready(step_metrics)
          log(f'first step compiled and ran in '
              f'{time.perf_counter() - started:.1f}s')
          progress.restart(start_step + 1)
        is_last = step == trainer.total_steps
        preempted = watcher.should_stop(step)
        is_eval = is_last or bool(eval_every and step % eval_every == 0)
        is_save = (is_last or is_eval or preempted or
                   step % config.train.checkpoint_every_steps == 0)
        is_log = (step % config.train.log_every_steps == 0 or is_last or
                  step == start_step + 1)
        if is_log or is_save:
          # Fetched before any evaluation or save: a diverged state is
          # never evaluated or saved under the 'stop' policy.
          scalars = {k: float(v)
                     for k, v in jax.device_get(step_metrics).items()}
          _check_finite(step, scalars, policy, last_saved)
          if scalars['nonfinite_steps'] > nonfinite_seen:
            nonfinite_seen = int(scalars['nonfinite_steps'])
            log(f'warning: skipped {nonfinite_seen} non-finite steps so far '
                f'(first at step {int(scalars["first_nonfinite_step"])})')
          if is_log:
            scalars.update(progress.report(step, scalars))
            scalars['epoch'] = step / trainer.steps_per_epoch
            writer.write_train(step, scalars)
        eval_metrics = None
        if is_eval:
          started = time.perf_counter()
          eval_metrics = last_metrics = run_evaluation(
              trainer, state, step, writer, workdir, log)
          progress.exclude(time.perf_counter() - started)
        if is_save:
          variables, train = _checkpoint_items(state)
          saver.save(
              step, variables=variables, train=train, iterator=iterator,
              config=config,
              metrics=({checkpoint.BEST_METRIC: eval_metrics[
                  checkpoint.BEST_METRIC]} if eval_metrics else {}))
          last_saved = step
        if preempted:
          saver.wait()  # Committed before the process exits.
          log(f'SIGTERM: saved step {step}; stopping')
          raise preemption.Preempted(step, manager.directory)
        if stop_at_step is not None and step >= stop_at_step:
          log(f'stopping at step {step} (stop_at_step)')
          break
  finally:
    try:
      saver.wait()  # Also on errors: the last good save gets committed.
    finally:
      manager.close()
      writer.close()
  return last_metrics
