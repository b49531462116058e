"""The detection task end to end: features, training, and run.py's modes.

On a tiny fake MMA-52 (3 classes, 6/3/3 videos of 30-60 frames) with a tiny
MANet backbone saved untrained (`checkpoint.save_variables`), so the mAPs
are those of a few steps; the shuffled-label control and the demo's mAP are
measured with configs/mmad_demo.py (README, benchmarks/RESULTS.md).
"""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile

import jax
import ml_collections
import numpy as np
import pytest

from configs import manet
from configs import mmad
from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import models
from maxmicro import optim
from maxmicro import reporting
from maxmicro import train
from maxmicro.data import build
from maxmicro.data import detection_pipeline
from maxmicro.data import records
from maxmicro.data import synthetic
from maxmicro.detection import features as features_lib
from maxmicro.tasks import detection
from tests import cpu_devices
from tests.tiny_run import fast_compile  # noqa: F401  pylint: disable=unused-import

CLASSES = (0, 9, 24)
NUM_STEPS = 6


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  """A built tiny fake MMA-52 and an untrained tiny backbone workdir."""
  root = tmp_path_factory.mktemp('mma52')
  synthetic.write_fake_mma52(
      root / 'raw', videos_per_split=(6, 3, 3), size=(40, 48),
      num_frames=(30, 60), instances_per_video=(1, 3), instance_frames=(8, 25),
      classes=list(CLASSES), seed=0)
  build.prepare_mma52(root / 'raw', root / 'tfds', 'small',
                      num_decode_workers=1)
  backbone = manet.get_config('tiny')
  model = models.build_model(backbone)
  variables = model.init(jax.random.key(0),
                         np.zeros(models.input_shape(backbone), np.float32))
  checkpoint.save_variables(root / 'backbone', variables, backbone)
  return root


def tiny_config(root, **detection_overrides):
  config = mmad.get_config()
  config.data.data_dir = str(root / 'tfds')
  config.data.builder_config = 'small'
  config.model.update(num_levels=2, width=16, head_depth=1,
                      attention_window=None)
  config.detection.update(
      backbone_workdir=str(root / 'backbone'), window_size=8,
      eval_window_stride=4, max_instances=4, classes=CLASSES,
      candidates_per_window=50, features_batch_size=4)
  config.detection.update(detection_overrides)
  config.optim.warmup_epochs = 0.0
  config.train.update(global_batch_size=2, num_train_steps=NUM_STEPS,
                      log_every_steps=2, checkpoint_every_steps=3)
  config.eval.global_batch_size = 4
  config.lock()
  config_checks.check_config(config)
  return config


@pytest.fixture(scope='module')
def trained(data_root, fast_compile):  # noqa: F811
  """A workdir trained for NUM_STEPS steps, features extracted on the way."""
  del fast_compile
  workdir = str(data_root / 'work')
  results = train.train_and_evaluate(tiny_config(data_root), workdir,
                                     log=lambda *_: None)
  return workdir, results


def test_features_have_one_step_per_stride_and_batching_changes_nothing(
    data_root, trained):
  del trained  # Extracted the features.
  config = tiny_config(data_root)
  meta = features_lib.check_features(config)
  backbone = features_lib.open_backbone(config)
  assert meta['feature_dim'] == features_lib.feature_dim(backbone.config) == 64
  assert meta['splits'] == {'train': 6, 'validation': 3, 'test': 3}
  stored = detection.split_features(config, 'validation')
  source = records.Mma52Records(config.data.data_dir, 'small', 'validation')
  computer = features_lib.FeatureComputer(backbone, batch_size=4)
  for index in range(len(stored)):
    video = stored[index]
    assert video['features'].shape == (
        math.ceil(video['num_frames'] / 4), 64)
    # Extraction shares batches between videos; a video alone gives the same.
    frames = records.decode_frames(source[index]['jpegs'],
                                   np.arange(video['num_frames']))
    alone = features_lib.video_features(computer, frames, frame_stride=4)
    np.testing.assert_allclose(video['features'], alone, rtol=1e-2,
                               atol=1e-2)
  assert len(detection.split_features(config, 'test')[0]['labels']) == 0


def test_stale_features_are_refused_never_overwritten(data_root, trained):
  del trained
  with pytest.raises(detection_pipeline.FeaturesError,
                     match=r'stale.*frame_stride=4 \(now 2\).*--mode=features'):
    detection.Detection(tiny_config(data_root, frame_stride=2)).ensure_data(
        log=lambda *_: None)
  copy = data_root / 'backbone_copy'
  shutil.copytree(data_root / 'backbone', copy, dirs_exist_ok=True)
  with pytest.raises(detection_pipeline.FeaturesError,
                     match='backbone_workdir='):
    features_lib.check_features(tiny_config(data_root,
                                            backbone_workdir=str(copy)))
  features_lib.check_features(tiny_config(data_root))  # Untouched.


def test_training_logs_the_map_and_keeps_the_best_checkpoint(trained):
  workdir, results = trained
  names = ['mAP'] + [f'mAP@{t / 10:.1f}' for t in range(1, 10)]
  assert sorted(results) == sorted(names)
  lines = reporting.read_metrics(workdir)
  evaluation = [line for line in lines if 'mAP' in line]
  assert len(evaluation) == 1 and evaluation[0]['split'] == 'validation'
  assert evaluation[0]['step'] == NUM_STEPS
  assert all(0 <= evaluation[0][name] <= 1 for name in names)
  train_lines = [line for line in lines if 'cls_loss' in line]
  assert train_lines and all(np.isfinite(line['loss']) for line in train_lines)
  manager = checkpoint.make_manager(checkpoint.checkpoint_dir(workdir),
                                    read_only=True)
  assert manager.best_step() == NUM_STEPS  # Ranked by checkpoint.BEST_METRIC.
  manager.close()


def _run(*args):
  env = dict(os.environ, PYTHONPATH=cpu_devices.REPO_ROOT, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  return subprocess.run([sys.executable, 'run.py', *args],
                        cwd=cpu_devices.REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


def test_eval_submit_predict(data_root, trained):
  workdir, results = trained
  result = _run(f'--workdir={workdir}', '--mode=eval')
  assert result.returncode == 0, result.stderr
  assert 'mAP@0.9' in result.stdout
  assert f'mAP      {100 * results["mAP"]:6.2f}' in result.stdout

  result = _run(f'--workdir={workdir}', '--mode=submit')
  assert result.returncode == 0, result.stderr
  with zipfile.ZipFile(os.path.join(workdir, 'submission.zip')) as archive:
    assert archive.namelist() == ['prediction.csv']
  with open(os.path.join(workdir, 'prediction.csv'), newline='') as file:
    rows = list(csv.reader(file))
  assert rows[0] == ['', 'video_id', 't_start', 't_end', 'class', 'score']
  assert {row[1] for row in rows[1:]} <= {'test0000', 'test0001', 'test0002'}
  assert {int(row[4]) for row in rows[1:]} <= set(CLASSES)

  video = data_root / 'raw' / 'val' / 'val0000.mp4'
  result = _run(f'--workdir={workdir}', '--mode=predict', f'--video={video}',
                '--top_k=3')
  assert result.returncode == 0, result.stderr
  with open(os.path.join(workdir, 'predictions.json')) as file:
    found = json.load(file)[str(video)]
  assert found and all(row['class'] in CLASSES for row in found)
  assert found[0]['name'] in result.stdout
  assert os.path.getsize(os.path.join(workdir, 'predictions',
                                      'val0000_timeline.png')) > 0


def test_bad_detection_commands_end_in_a_message(trained, tmp_path):
  workdir, _ = trained
  for args, fragment in (
      ((f'--workdir={workdir}', '--mode=eval', '--split=test'),
       'test is unlabelled'),
      ((f'--workdir={tmp_path}', '--mode=features'), 'needs --config'),
      (('--config=configs/mmad.py', f'--workdir={tmp_path}',
        '--mode=features', f'--config.detection.backbone_workdir={tmp_path}/x'),
       'make demo')):
    result = _run(*args)
    assert result.returncode == 1, result.stdout
    assert fragment in result.stderr and 'Traceback' not in result.stderr


def test_config_rules():
  config = ml_collections.ConfigDict(mmad.get_config().to_dict())
  config.detection.classes = (1, 1)
  with pytest.raises(ValueError, match='detection.classes'):
    config_checks.check_config(config)
  config.detection.classes = None
  config.model.kernel_size = 4
  with pytest.raises(ValueError, match='must be odd'):
    config_checks.check_config(config)


def test_every_detector_parameter_has_an_optimizer_group():
  config = mmad.get_config()
  model = detection.build_detector(config)
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), np.zeros((1, 16, 8), np.float32)))
  groups = optim.parameter_groups({'model': params['params']}, fc_lr5=False)
  assert groups['model']['regression_scale']['scale'] == 'norm'  # No decay.
  assert groups['model']['attention0']['attention']['query']['kernel'] == (
      'weight')


def test_features_mode_extracts_into_the_given_directory(data_root, tmp_path):
  result = _run(
      '--config=configs/mmad.py', f'--workdir={tmp_path}', '--mode=features',
      f'--config.data.data_dir={data_root / "tfds"}',
      '--config.data.builder_config=small',
      f'--config.detection.backbone_workdir={data_root / "backbone"}',
      f'--config.detection.features_dir={tmp_path / "features"}',
      '--config.detection.features_batch_size=4')
  assert result.returncode == 0, result.stderr
  assert 'clips/s' in result.stdout
  assert sorted(os.listdir(tmp_path / 'features')) == [
      'meta.json', 'test.npy', 'test_index.npz', 'train.npy',
      'train_index.npz', 'validation.npy', 'validation_index.npz']
