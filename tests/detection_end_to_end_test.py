"""Detection trained end to end from frames (tasks.detection_end_to_end).

On a tiny fake MMA-52 (3 classes, 6/3/3 videos of 30-60 frames) with a tiny
MANet backbone saved untrained, windows of 8 steps (2 clips of the
backbone's 4): the frame windows are the clips extraction cuts, gradients
reach the backbone, which moves at its smaller learning rate, the loss
falls, and a run's last evaluation is what `--mode=eval` of its checkpoint
gives, run after run.
"""

import json
import os
import types
import zipfile

import jax
import numpy as np
import pytest

from configs import mmad
from configs import mmad_demo
from maxmicro import config_checks
from maxmicro import detection_commands
from maxmicro import optim
from maxmicro import reporting
from maxmicro import resume
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train
from maxmicro import train_state
from maxmicro.data import detection_pipeline
from maxmicro.data import frame_windows
from maxmicro.data import records
from maxmicro.detection import features as features_lib
from maxmicro.tasks import detection_end_to_end
from tests import tiny_run
from tests.tiny_run import fast_compile  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.usefixtures('fast_compile')

CLASSES = (0, 9, 24)
NUM_STEPS = 4
NUM_FIXED_STEPS = 6
# No weight decay, and a learning rate that moves a tiny model in a few steps.
FAST_OPTIM = dict(weight_decay=0.0, base_learning_rate=1e-2, base_batch_size=2)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  """A built tiny fake MMA-52 and an untrained tiny backbone workdir."""
  return tiny_run.build_tiny_mma52(
      tmp_path_factory.mktemp('mma52_end_to_end'), CLASSES)


def tiny_config(root, num_train_steps=NUM_STEPS, **optim_overrides):
  config = tiny_run.tiny_mma52_config(root, CLASSES)
  config.detection.end_to_end = True
  config.optim.update(optim_overrides)
  config.train.update(num_train_steps=num_train_steps, log_every_steps=1,
                      checkpoint_every_steps=2)
  config.lock()
  config_checks.check_config(config)
  return config


def test_frame_windows_are_the_clips_extraction_cuts(data_root):
  config = tiny_config(data_root)
  task = tasks.get_task(config)
  assert isinstance(task, detection_end_to_end.DetectionEndToEnd)
  spec = task.spec
  assert (spec.clip_steps, spec.frames_per_window) == (4, 8)
  source = records.Mma52Records(config.data.data_dir, 'small', 'train')
  video = source[0]
  num_frames = len(video['jpegs'])
  steps = detection_pipeline.num_steps(num_frames, 4)
  starts = frame_windows.aligned_starts(steps, 8, 4)
  assert list(starts) == list(range(0, -(-(steps - 8) // 4) * 4 + 1, 4))
  # Extraction's step frames of the whole video, padded with the last one.
  all_steps = features_lib.step_frames(
      records.decode_frames(video['jpegs'], np.arange(0, num_frames, 4)),
      task.backbone)
  last = int(starts[-1])
  window = frame_windows.frame_window_example(video, last, spec)
  real = min(steps - last, 8)
  # The same frames decoded and resized by the same eval_clip on this
  # machine, then indexed: bit for bit.
  np.testing.assert_array_equal(window['frames'][:real],
                                all_steps[last:last + real])
  np.testing.assert_array_equal(window['frames'][real:], np.repeat(
      all_steps[-1:], 8 - real, axis=0))
  np.testing.assert_array_equal(window['mask'], np.arange(8) < real)
  # The instances are those of the feature windows of the same steps.
  features = dict(video, features=np.zeros((steps, 1), np.float32))
  expected = detection_pipeline.window_example(features, last, spec.window)
  for key in ('mask', 'segments', 'labels', 'valid'):
    np.testing.assert_array_equal(window[key], expected[key])


@pytest.fixture(scope='module')
def stepped(data_root):
  """A fresh end-to-end state, and the states after 1..NUM_FIXED_STEPS steps
  on one fixed batch (host copies), with each step's metrics."""
  # No weight decay: an AdamW first step then moves every parameter by
  # about its group's learning rate, so the largest moves give the ratio.
  # Steps enough that the cosine schedule is still high after the last.
  config = tiny_config(data_root, num_train_steps=10 * NUM_FIXED_STEPS,
                       **FAST_OPTIM)
  task = tasks.get_task(config)
  mesh = sharding.make_mesh()
  trainer = train.make_trainer(config, task, mesh, task.num_train_examples())
  # The keys `train_and_evaluate` draws from the seed.
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = resume.load_pretrained(
      trainer.init_state(init_rng),
      task.pretrained_variables(log=lambda *_: None),
      train_state.state_to_items(trainer.state_shardings)[0])
  batch = next(task.train_iterator(config.train.global_batch_size))
  batch = sharding.global_batch({key: batch[key] for key in task.batch_keys},
                                mesh)
  step = trainer.jit_train_step()
  states, metrics = [jax.device_get(state)], []
  for _ in range(NUM_FIXED_STEPS):
    state, step_metrics = step(state, batch, step_rng)
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(step_metrics))
  return config, states, metrics


def _max_change(new, old):
  return max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)))


def test_backbone_starts_pretrained_and_learns_at_its_smaller_rate(stepped):
  config, states, metrics = stepped
  pretrained = features_lib.open_backbone(config).variables
  np.testing.assert_array_equal(  # Loaded, not computed: exact.
      states[0].params['model']['backbone']['conv1']['kernel'],
      pretrained['params']['conv1']['kernel'])
  assert metrics[0]['grad_norm'] > 0
  # Without weight decay, only a gradient moves a parameter.
  moved = {module: _max_change(states[1].params['model'][module],
                               states[0].params['model'][module])
           for module in ('backbone', 'detector')}
  assert moved['backbone'] > 0
  # AdamW's first step moves a parameter by lr * g / (|g| + eps): each
  # module's largest move is its rate, short by eps / |g| and by float32
  # rounding of the parameters (an ulp of 1 in the backbone's 5e-4 move).
  assert moved['backbone'] / moved['detector'] == pytest.approx(
      config.detection.backbone_lr_multiplier, rel=0.05)
  # Frozen statistics: the trunk's running averages never move.
  assert _max_change(states[-1].batch_stats, states[0].batch_stats) == 0


def test_loss_falls_on_a_batch(stepped):
  _, _, metrics = stepped
  losses = [float(step_metrics['loss']) for step_metrics in metrics]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope='module')
def trained(data_root, tmp_path_factory):
  """A workdir trained end to end for NUM_STEPS steps, and its last
  evaluation."""
  workdir = str(tmp_path_factory.mktemp('run'))
  return workdir, train.train_and_evaluate(
      tiny_config(data_root, **FAST_OPTIM), workdir, log=lambda *_: None)


def _flags(workdir, mode, **more):
  fields = dict(workdir=workdir, mode=mode, config=None, checkpoint='latest',
                split=None, video=None, top_k=3, output_json=None)
  fields.update(more)
  return types.SimpleNamespace(**fields)


def _first_batches(task, count=2):
  iterator = task.train_iterator(per_process_batch_size=2)
  return [next(iterator) for _ in range(count)]


def test_same_seed_same_batches_and_first_step(data_root, stepped, trained):
  config = tiny_config(data_root)
  first, again = (_first_batches(tasks.get_task(config)) for _ in range(2))
  # Two iterators from the same seed on this machine: bit for bit.
  for batch, same in zip(first, again):
    for key in batch:
      np.testing.assert_array_equal(batch[key], same[key])
  other = tiny_config(data_root)
  other.unlock()
  other.seed = 1
  assert any(not np.array_equal(batch['frames'], changed['frames'])
             for batch, changed in zip(
                 first, _first_batches(tasks.get_task(other))))
  # The run and the fixed-batch steps, each built and compiled on its own
  # from the same seed, start from the same state and batch.
  workdir, _ = trained
  losses = [line['loss'] for line in reporting.read_metrics(workdir)
            if 'cls_loss' in line]
  assert len(losses) == NUM_STEPS
  # The same float32 computation compiled twice: equal up to the rounding
  # of the fusions each compilation picks (1e-6 relative).
  assert losses[0] == pytest.approx(float(stepped[2][0]['loss']), rel=1e-6)


def test_eval_reproduces_the_runs_map_and_submit_predict_work(
    data_root, trained, capsys):
  workdir, results = trained
  assert 0 < results['mAP'] <= 1  # Its detections overlap instances.
  # No features directory is made or read.
  assert not os.path.exists(features_lib.features_dir(tiny_config(data_root)))
  capsys.readouterr()
  detection_commands.MODES['eval'](_flags(workdir, 'eval'))
  out = capsys.readouterr().out
  assert f'mAP      {100 * results["mAP"]:6.2f}' in out, out
  assert 'end to end' in out
  # --mode=eval of the checkpoint against the run's own last evaluation, on
  # this machine: bit for bit.
  with open(os.path.join(workdir, 'eval',
                         f'validation_step{NUM_STEPS}_detection.json')) as file:
    assert json.load(file)['mAP'] == results['mAP']

  detection_commands.MODES['submit'](_flags(workdir, 'submit'))
  with zipfile.ZipFile(os.path.join(workdir, 'submission.zip')) as archive:
    assert archive.namelist() == ['prediction.csv']

  video = data_root / 'raw' / 'val' / 'val0000.mp4'
  detection_commands.MODES['predict'](_flags(workdir, 'predict',
                                             video=str(video)))
  with open(os.path.join(workdir, 'predictions.json')) as file:
    found = json.load(file)[str(video)]
  assert all(row['class'] in CLASSES for row in found)


def test_config_rules_and_the_demo_variant():
  config = mmad.get_config()
  assert config.detection.end_to_end is False
  config.detection.end_to_end = True
  config.detection.backbone_lr_multiplier = -0.1
  with pytest.raises(ValueError, match='backbone_lr_multiplier'):
    config_checks.check_config(config)
  config.detection.backbone_lr_multiplier = 0.05
  config.detection.shuffle_train_labels = 'videos'
  with pytest.raises(ValueError, match='shuffle_train_labels'):
    config_checks.check_config(config)
  demo = mmad_demo.get_config('end_to_end')
  assert demo.detection.end_to_end
  assert demo.detection.window_size % 6 == 0  # Whole clips of the demo MANet.
  assert not mmad_demo.get_config().detection.end_to_end


def test_scaling_a_module_the_model_lacks_names_it():
  groups = {'model': {'backbone': {'conv1': {'kernel': 'weight'}},
                      'detector': {'projection': {'bias': 'bias'}}}}
  scaled = optim.scale_modules(groups, {'backbone': 0.05})
  assert scaled['model']['backbone']['conv1']['kernel'] == 'backbone/weight'
  assert scaled['model']['detector'] == groups['model']['detector']
  with pytest.raises(ValueError, match="no module 'trunk'.*backbone"):
    optim.scale_modules(groups, {'trunk': 0.05})
