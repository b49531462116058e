"""The training loop end to end on the tiny model: outputs, determinism,
resumption, and the train step on its own."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import labels
from maxmicro import losses
from maxmicro import metrics
from maxmicro import reporting
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train
from maxmicro.tasks import recognition
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def _losses(workdir):
  """{step: loss} of the train lines; a re-run step keeps its last value."""
  return {r['step']: r['loss'] for r in reporting.read_metrics(workdir,
                                                               'train')}


def test_run_writes_the_contract_outputs(built_fake_ma52):
  workdir, result, lines = tiny_run.trained_workdir(built_fake_ma52)
  records = reporting.read_metrics(workdir)
  train_lines = [r for r in records if r['kind'] == 'train']
  assert [r['step'] for r in train_lines] == [1, 2, 3, 4]
  for record in train_lines:
    assert np.isfinite(record['loss']) and record['learning_rate'] > 0
    assert {'epoch', 'grad_norm', 'ce_loss', 'embedding_loss'} <= set(record)
  (eval_line,) = [r for r in records if 'split' in r]
  assert eval_line['split'] == 'validation' and eval_line['step'] == 4
  assert set(metrics.METRIC_NAMES) <= set(eval_line)
  assert eval_line['num_videos'] == 52
  assert result == {k: eval_line[k] for k in metrics.METRIC_NAMES}
  manager = checkpoint.make_manager(checkpoint.checkpoint_dir(workdir),
                                    read_only=True)
  assert list(manager.all_steps()) == [2, 4]
  assert manager.best_step() == 4  # The only step with validation metrics.
  for suffix in ('_metrics.json', '_confusion.png', '_f1.png'):
    assert os.path.exists(os.path.join(workdir, 'eval',
                                       f'validation_step4{suffix}'))
  with open(os.path.join(workdir, 'eval', 'validation_step4_metrics.json')) \
      as file:
    assert len(json.load(file)['per_class_f1']) == 52
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  assert any('first step compiled' in line for line in lines)


def test_same_seed_same_losses_and_resume_matches(built_fake_ma52, tmp_path):
  reference, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  config = tiny_run.tiny_config(built_fake_ma52)
  # Stopped after step 3 as a preemption would: the last checkpoint is 2.
  # Both comparisons: two runs on this machine, bit for bit.
  _, lines = tiny_run.run(config, str(tmp_path), stop_at_step=3)
  assert _losses(str(tmp_path)) == {
      step: loss for step, loss in _losses(reference).items() if step <= 3}
  _, lines = tiny_run.run(config, str(tmp_path))
  assert 'resuming from step 2' in lines
  # Two runs on this machine: bit for bit.
  assert _losses(str(tmp_path)) == _losses(reference)  # Exactly equal.


def test_evaluation_compiles_once_per_run(built_fake_ma52, tmp_path,
                                          monkeypatch):
  """Two evaluations in one run: the second compiles nothing (jax's backend
  compile events counted while each evaluation runs)."""
  compiles_per_evaluation = []
  compiled = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      compiled.append(event)

  call = recognition.Evaluator.__call__

  def counting_call(self, variables, step):
    compiled.clear()
    result = call(self, variables, step)
    compiles_per_evaluation.append(len(compiled))
    return result
  monkeypatch.setattr(recognition.Evaluator, '__call__', counting_call)
  # 26 steps per epoch on the fake data: an evaluation after every step.
  config = tiny_run.tiny_config(built_fake_ma52, num_train_steps=2,
                                eval_every_epochs=1 / 26)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    tiny_run.run(config, str(tmp_path))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert [r['step'] for r in reporting.read_metrics(str(tmp_path),
                                                    'eval')] == [1, 2]
  assert compiles_per_evaluation[0] >= 1
  assert compiles_per_evaluation[1:] == [0]


@pytest.mark.parametrize('videos_per_class', [1, 12])
def test_demo_checkpoints_every_epoch_of_its_data(videos_per_class):
  """The demo's save cadence comes from the steps per epoch of the data the
  run trains on (`--config.synthetic_data.videos_per_class=1`: 3 steps)."""
  config = demo.get_config()
  config.synthetic_data.videos_per_class = videos_per_class
  config.lock()
  config_checks.check_config(config)
  trainer = train.make_trainer(
      config, tasks.get_task(config), sharding.make_mesh(),
      num_train_examples=videos_per_class * labels.NUM_ACTIONS)
  steps_per_epoch = videos_per_class * labels.NUM_ACTIONS // 16
  assert trainer.steps_per_epoch == steps_per_epoch
  cadence = train.Cadence.of(config.train, start_step=0,
                             total_steps=trainer.total_steps,
                             steps_per_epoch=trainer.steps_per_epoch)
  saved = [step for step in range(1, trainer.total_steps + 1)
           if cadence.saves(step)]
  epoch_ends = list(range(steps_per_epoch, trainer.total_steps + 1,
                           steps_per_epoch))
  assert set(epoch_ends) <= set(saved)
  assert len(saved) == len(epoch_ends) == 14  # No more: evals end epochs.


def test_checkpoint_every_steps_is_positive_or_none():
  config = demo.get_config()
  config.train.checkpoint_every_steps = 0
  with pytest.raises(ValueError, match='checkpoint_every_steps=0 must be a '
                     'positive integer or None'):
    config_checks.check_config(config)


def test_finished_run_does_nothing(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  config = tiny_run.tiny_config(built_fake_ma52)
  before = reporting.read_metrics(workdir)
  result, lines = tiny_run.run(config, workdir)
  assert result is None
  assert any('already finished at step 4' in line for line in lines)
  assert reporting.read_metrics(workdir) == before


def test_train_step_alone(built_fake_ma52):
  """The jitted step is a pure function of (state, batch, rng)."""
  config = tiny_run.tiny_config(built_fake_ma52)
  mesh = sharding.make_mesh()
  trainer = train.make_trainer(config, tasks.get_task(config), mesh,
                             num_train_examples=8)
  state = trainer.init_state(jax.random.key(0))
  step = trainer.jit_train_step()
  rng = np.random.default_rng(0)
  batch = {'video': jnp.asarray(rng.integers(0, 256, (4, 4, 32, 32, 3),
                                             dtype=np.uint8)),
           'label': jnp.asarray([0, 1, 2, 3], jnp.int32)}
  before = jax.device_get(state.batch_stats)
  first, first_metrics = step(state, batch, jax.random.key(1))
  assert state.step.is_deleted()  # Donated.
  assert int(first.step) == 1
  assert np.isfinite(float(first_metrics['loss']))
  assert float(first_metrics['grad_norm']) > 0
  # allclose's default (1e-5 relative, 1e-8 absolute for the means at 0)
  # separates one BatchNorm update (10% of a batch's statistics) from rounding.
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before,
                         jax.device_get(first.batch_stats))
  assert any(jax.tree.leaves(changed))
  # Same inputs, same outputs (a fresh state: the first was donated): two
  # calls on this machine, bit for bit.
  again, again_metrics = step(trainer.init_state(jax.random.key(0)), batch,
                              jax.random.key(1))
  assert float(again_metrics['loss']) == float(first_metrics['loss'])


def test_learnable_label_vectors_train(built_fake_ma52):
  config = tiny_run.tiny_config(built_fake_ma52)
  config.unlock()
  config.loss.learnable_label_vectors = True
  trainer = train.make_trainer(config, tasks.get_task(config),
                             sharding.make_mesh(), 8)
  state = trainer.init_state(jax.random.key(0))
  vectors = np.asarray(state.params['label_vectors'])
  # Initialised as loaded: exact.
  np.testing.assert_array_equal(vectors, losses.load_label_vectors(
      config.loss.label_vectors, config.model.embedding_dim))
  batch = {'video': jnp.zeros((4, 4, 32, 32, 3), jnp.uint8),
           'label': jnp.arange(4, dtype=jnp.int32)}
  state, _ = trainer.jit_train_step()(state, batch, jax.random.key(1))
  assert np.any(np.asarray(state.params['label_vectors']) != vectors)


def test_non_finite_loss_fails_loudly():
  with pytest.raises(FloatingPointError, match='loss is nan at step 7'):
    reporting.check_finite(7, {'loss': float('nan'), 'grad_norm': 1.0})


def test_batch_not_divisible_by_devices_raises(built_fake_ma52):
  config = tiny_run.tiny_config(built_fake_ma52)
  with pytest.raises(ValueError, match='larger than the 3 training videos'):
    train.make_trainer(config, tasks.get_task(config), sharding.make_mesh(),
                       num_train_examples=3)
