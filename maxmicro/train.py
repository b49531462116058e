"""The trainer: the jitted step and the loop, for any task.

Read top to bottom: `train_step`, the `Trainer` (what a run fixes before it
starts), then `train_and_evaluate(config, workdir)`, which builds the mesh,
restores or initialises the state (in `resume.initial_state`'s order), trains
(`config.train.grad_accum_steps` micro-batches per step), evaluates
every `config.train.eval_every_epochs` and at the end, and checkpoints. What
differs between tasks (model, loss, data, evaluation, pretrained modules and
per-module learning rates) comes from the task
(`maxmicro.tasks`); the loop knows nothing of MA-52.

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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from maxmicro import checkpoint
from maxmicro.cadence import Cadence
from maxmicro import grad_accum
from maxmicro import optim
from maxmicro import preemption
from maxmicro import reporting
from maxmicro import resume
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train_state
from maxmicro import xla_options


def train_step(state, batch, rng, *, loss_fn, tx, schedule,
               grad_accum_steps=1):
  """One optimizer step on a global batch.

  Args:
    state: `TrainState` (donated).
    batch: the task's arrays, split over the mesh.
    rng: the run's base key; this step's key is `fold_in(rng, state.step)`,
      so a resumed run draws the same dropout masks.
    loss_fn: the task's `(params, batch_stats, batch, rng) -> (loss, (parts,
      batch_stats))`; `loss_fn`, `tx`, `schedule` and `grad_accum_steps`
      are bound with `functools.partial`.
    grad_accum_steps: micro-batches the batch runs as, their gradients
      averaged into this one update (`grad_accum.value_and_grad`).

  Returns:
    `(state, metrics)`: metrics are scalars (loss and its parts, grad norm,
    learning rate, and the non-finite step counters). A step whose loss or
    gradient norm is NaN or Inf advances `step` and the counters only:
    parameters, statistics and optimizer state stay the last good ones.
  """
  rng = jax.random.fold_in(rng, state.step)
  (loss, (parts, batch_stats)), grads = grad_accum.value_and_grad(
      loss_fn, grad_accum_steps)(state.params, state.batch_stats, batch, rng)
  # The learning rate is `schedule(state.step)`, also after skipped steps.
  updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                 step=state.step)
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
      'nonfinite_steps': new_state.nonfinite_steps,
      'first_nonfinite_step': new_state.first_nonfinite_step,
  }
  return new_state, metrics


@dataclasses.dataclass(frozen=True)
class Trainer:
  """The pieces of a run that do not change while it trains."""
  config: Any
  task: Any
  mesh: Any
  tx: Any
  schedule: Callable[[Any], Any]
  steps_per_epoch: int
  total_steps: int
  create_state: Callable[[Any], Any]  # rng -> a fresh TrainState.
  abstract_state: Any  # With its shardings.

  @property
  def state_shardings(self):
    return jax.tree.map(lambda leaf: leaf.sharding, self.abstract_state)

  def init_state(self, rng):
    """A fresh state, created on the devices that hold it."""
    return jax.jit(self.create_state,
                   out_shardings=self.state_shardings)(rng)

  def jit_train_step(self):
    step = functools.partial(
        train_step, loss_fn=self.task.loss_fn(), tx=self.tx,
        schedule=self.schedule,
        grad_accum_steps=self.config.train.grad_accum_steps)
    return jax.jit(
        step,
        in_shardings=(self.state_shardings, sharding.batch_sharding(self.mesh),
                      sharding.replicated(self.mesh)),
        out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
        donate_argnums=(0,), compiler_options=xla_options.compiler_options())


def make_trainer(config, task, mesh, num_train_examples):
  """The optimizer, schedule and abstract state of a run of `task`."""
  global_batch = config.train.global_batch_size
  steps_per_epoch = num_train_examples // global_batch
  if not steps_per_epoch:
    raise ValueError(
        f'config.train.global_batch_size={global_batch} is larger than the '
        f'{num_train_examples} training videos.')
  grad_accum.check_steps(config.train.grad_accum_steps,
                         per_device_batch_size=global_batch // mesh.size)
  total_steps = (config.train.num_train_steps or
                 int(config.train.num_epochs * steps_per_epoch))
  schedule_epochs = config.optim.get('schedule_epochs')
  schedule = optim.make_schedule(
      config.optim, global_batch_size=global_batch,
      steps_per_epoch=steps_per_epoch,
      total_steps=(int(schedule_epochs * steps_per_epoch) if schedule_epochs
                   else total_steps))
  tx = optim.make_optimizer(
      config.optim, schedule,
      module_multipliers=task.learning_rate_multipliers())
  create_state = functools.partial(
      train_state.create_train_state, model=task.model, tx=tx,
      input_shape=task.input_shape, extra_params=task.extra_params())
  abstract_state = jax.eval_shape(create_state, jax.random.key(0))
  abstract_state = sharding.with_shardings(
      abstract_state,
      sharding.state_shardings(abstract_state, mesh, config.train.fsdp))
  return Trainer(config=config, task=task, mesh=mesh, tx=tx,
                 schedule=schedule, steps_per_epoch=steps_per_epoch,
                 total_steps=total_steps, create_state=create_state,
                 abstract_state=abstract_state)


def train_and_evaluate(config, workdir, *, log=print):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Args:
    config: a locked config from `configs/`, checked
      (`config_checks.check_config`).
    workdir: where checkpoints, `metrics.jsonl`, TensorBoard files and
      evaluation reports go.
    log: prints a line (process 0 only).

  Returns:
    The last evaluation's metrics, or None if no evaluation ran.
  """
  log = log if jax.process_index() == 0 else (lambda *_: None)
  task = tasks.get_task(config)  # Loads and checks the task's files.
  task.ensure_data(log)
  mesh = sharding.make_mesh()
  num_train = task.num_train_examples()
  trainer = make_trainer(config, task, mesh, num_train)
  log(f'process {jax.process_index()}/{jax.process_count()}: '
      f'{mesh.size} devices ({jax.devices()[0].platform}), {num_train} '
      f'training videos, {trainer.steps_per_epoch} steps per epoch, '
      f'{trainer.total_steps} steps, global batch '
      f'{config.train.global_batch_size}')
  iterator = task.train_iterator(
      config.train.global_batch_size // jax.process_count())
  manager = checkpoint.make_manager(checkpoint.checkpoint_dir(workdir),
                                    keep=config.train.keep_checkpoints)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = resume.initial_state(trainer, manager, iterator, init_rng, log)
  start_step = int(jax.device_get(state.step))
  if start_step >= trainer.total_steps:
    log(f'training already finished at step {start_step} of '
        f'{trainer.total_steps}; nothing to do.')
    manager.close()
    return None

  jitted_step = trainer.jit_train_step()
  evaluator = task.make_evaluator(
      mesh, train_state.state_to_items(trainer.state_shardings)[0], workdir)
  reporter = reporting.StepReporter(
      config, steps_per_epoch=trainer.steps_per_epoch,
      total_steps=trainer.total_steps, workdir=workdir, state=state,
      last_saved=manager.latest_step(), log=log)
  cadence = Cadence.of(config.train, start_step=start_step,
                       total_steps=trainer.total_steps,
                       steps_per_epoch=trainer.steps_per_epoch)
  saver = checkpoint.Saver(manager)
  eval_metrics = None
  try:
    with preemption.Watcher() as watcher:
      for step in range(cadence.first_step, cadence.last_step + 1):
        started = time.perf_counter()
        local_batch = reporter.next_batch(iterator)
        batch = sharding.global_batch(
            {key: local_batch[key] for key in task.batch_keys}, mesh)
        state, step_metrics = jitted_step(state, batch, step_rng)
        if step == cadence.first_step:
          reporter.first_step_done(step, step_metrics, started)
        preempted = watcher.should_stop(step)
        saves = preempted or cadence.saves(step)
        if cadence.logs(step) or saves:
          reporter.check(step, step_metrics, write=cadence.logs(step))
        if cadence.evaluates(step):
          eval_metrics = reporter.evaluate(evaluator, state, step)
        if saves:
          variables, train = train_state.state_to_items(state)
          best = ({checkpoint.BEST_METRIC: eval_metrics[task.best_metric]}
                  if cadence.evaluates(step) else {})
          saver.save(step, variables=variables, train=train,
                     iterator=iterator, config=config, metrics=best)
          reporter.last_saved = step
        if preempted:
          saver.wait()  # Committed before the process exits.
          log(f'SIGTERM: saved step {step}; stopping')
          raise preemption.Preempted(step, manager.directory)
  finally:
    try:
      saver.wait()  # Also on errors: the last good save gets committed.
    finally:
      manager.close()
      reporter.close()
  return eval_metrics
