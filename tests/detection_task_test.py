"""The detection task end to end: features, training, and run.py's modes.

On a tiny fake MMA-52 (3 classes, 6/3/3 videos of 30-60 frames) with a tiny
MANet backbone saved untrained (`checkpoint.save_variables`), so the mAPs
are those of a few steps; the shuffled-label control and the demo's mAP are
measured with configs/mmad_demo.py (README, benchmarks/RESULTS.md).
"""

import csv
import functools
import hashlib
import json
import math
import os
import shutil
import types
import zipfile

import jax
import ml_collections
import numpy as np
import pytest

from configs import manet
from configs import mmad
from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import convert
from maxmicro import detection_commands
from maxmicro import models
from maxmicro import optim
from maxmicro import reporting
from maxmicro import train
from maxmicro.data import detection_pipeline
from maxmicro.data import records
from maxmicro.detection import backbones
from maxmicro.detection import features as features_lib
from maxmicro.detection import provenance
from maxmicro.tasks import detection
from tests import fault_launch
from tests import tiny_run
from tests.tiny_run import fast_compile  # noqa: F401  pylint: disable=unused-import

CLASSES = (0, 9, 24)
NUM_STEPS = 6


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  """A built tiny fake MMA-52 and an untrained tiny backbone workdir."""
  return tiny_run.build_tiny_mma52(tmp_path_factory.mktemp('mma52'),
                                   CLASSES)


def tiny_config(root, **detection_overrides):
  config = tiny_run.tiny_mma52_config(root, CLASSES)
  config.detection.update(detection_overrides)
  config.train.update(num_train_steps=NUM_STEPS, log_every_steps=2,
                      checkpoint_every_steps=3)
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
    # Stored features are float16 (half an ulp: 2^-11 = 4.9e-4 relative);
    # 1e-2 bounds that and the float32 batch-order differences with margin.
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


def test_eval_submit_predict(data_root, trained):
  workdir, results = trained
  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=eval')
  assert result.returncode == 0, result.stderr
  assert 'mAP@0.9' in result.stdout
  assert f'mAP      {100 * results["mAP"]:6.2f}' in result.stdout

  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=submit')
  assert result.returncode == 0, result.stderr
  with zipfile.ZipFile(os.path.join(workdir, 'submission.zip')) as archive:
    assert archive.namelist() == ['prediction.csv']
  with open(os.path.join(workdir, 'prediction.csv'), newline='') as file:
    rows = list(csv.reader(file))
  assert rows[0] == ['', 'video_id', 't_start', 't_end', 'class', 'score']
  assert {row[1] for row in rows[1:]} <= {'test0000', 'test0001', 'test0002'}
  assert {int(row[4]) for row in rows[1:]} <= set(CLASSES)

  video = data_root / 'raw' / 'val' / 'val0000.mp4'
  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=predict',
                           f'--video={video}', '--top_k=3')
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
    result = tiny_run.run_py(*args)
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
  result = tiny_run.run_py(
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


def test_training_records_the_features_it_learnt_from(data_root, trained):
  workdir, _ = trained
  meta = features_lib.check_features(tiny_config(data_root))
  assert provenance.read(workdir) == meta['identity']


def _features_of_a_copied_backbone(data_root, directory):
  """A copy of the backbone workdir and of the features, which say they were
  made by the copy: consistent with each other, but not the features the
  detector was trained on."""
  copy = directory / 'backbone_moved'
  shutil.copytree(data_root / 'backbone', copy)
  features = directory / 'features'
  shutil.copytree(features_lib.features_dir(tiny_config(data_root)), features)
  meta = detection_pipeline.read_meta(str(features), how_to_extract='')
  meta['identity']['backbone_workdir'] = str(copy)
  detection_pipeline.write_meta(str(features), meta)
  return tiny_config(data_root, backbone_workdir=str(copy),
                     features_dir=str(features))


def test_eval_and_submit_refuse_features_other_than_those_trained_on(
    data_root, trained, tmp_path):
  workdir, _ = trained
  config = _features_of_a_copied_backbone(data_root, tmp_path)
  features_lib.check_features(config)  # Not stale for their backbone.
  flags = types.SimpleNamespace(workdir=workdir, config=config,
                                checkpoint='latest', split=None)
  for mode in (detection_commands.evaluate, detection_commands.submit_mode):
    with pytest.raises(detection_pipeline.FeaturesError,
                       match=r'detector in .* trained on other features than '
                       r'the features in .*features: it was trained with '
                       r"backbone_workdir='.*/backbone' \(now '.*/"
                       r"backbone_moved'\)"):
      mode(flags)


def test_predict_refuses_a_backbone_changed_since_training(data_root,
                                                           trained):
  workdir, _ = trained
  backbone = data_root / 'backbone'
  # A newer checkpoint of the backbone (the same weights, for speed).
  checkpoint.save_variables(backbone, tiny_run.tiny_backbone_variables(),
                            manet.get_config('tiny'), step=1)
  flags = types.SimpleNamespace(
      workdir=workdir, checkpoint='latest', top_k=3, output_json=None,
      video=str(data_root / 'raw' / 'val' / 'val0000.mp4'))
  try:
    with pytest.raises(detection_pipeline.FeaturesError,
                       match=r'detector in .* it was trained with '
                       r'backbone_step=0 \(now 1\)'):
      detection_commands.predict(flags)
  finally:
    shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(str(backbone)),
                               '1'))


def test_resuming_on_other_features_is_refused(tmp_path):
  provenance.record(str(tmp_path), {'backbone_step': 4, 'frame_stride': 4})
  provenance.record(str(tmp_path), {'backbone_step': 4, 'frame_stride': 4})
  with pytest.raises(detection_pipeline.FeaturesError,
                     match=r'backbone_step=4 \(now 6\)\. .*new workdir'):
    provenance.record(str(tmp_path), {'backbone_step': 6, 'frame_stride': 4})


def test_two_processes_extract_the_features_of_one(data_root, trained,
                                                   tmp_path):
  """Each process extracts every other video; process 0 merges the parts
  in video order: the arrays and index of the one-process extraction."""
  del trained  # Extracted the one-process features, in this process.
  one = features_lib.features_dir(tiny_config(data_root))
  two = tmp_path / 'features'
  outcomes = fault_launch.launch(2, [
      '--config=configs/mmad.py', f'--workdir={tmp_path}', '--mode=features',
      f'--config.data.data_dir={data_root / "tfds"}',
      '--config.data.builder_config=small',
      f'--config.detection.backbone_workdir={data_root / "backbone"}',
      f'--config.detection.features_dir={two}',
      '--config.detection.features_batch_size=4'], str(tmp_path / 'cache'))
  for index, (code, out, err) in enumerate(outcomes):
    assert code == 0, (index, out, err)
  assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # No parts left.
  read = functools.partial(detection_pipeline.read_meta, how_to_extract='')
  for key in ('identity', 'feature_dim', 'splits'):
    assert read(str(two))[key] == read(one)[key], key
  for split in detection_pipeline.SPLITS:
    ours = detection_pipeline.SplitFeatures(str(two), split)
    reference = detection_pipeline.SplitFeatures(one, split)
    # Two extractions on this machine, in batches of the same shape: bit for
    # bit.
    np.testing.assert_array_equal(ours.features, reference.features)
    for key, value in reference.index.items():
      np.testing.assert_array_equal(ours.index[key], value, err_msg=key)


def _imagenet_config(data_root, state_dict_path, features_dir):
  tiny = manet.get_config('tiny')
  return tiny_config(
      data_root, backbone_workdir=None, backbone_init_from=state_dict_path,
      features_dir=features_dir, backbone_config=ml_collections.ConfigDict({
          'model': tiny.model, 'data': {
              'image_size': tiny.data.image_size,
              'resize_short_side': tiny.data.resize_short_side}}))


def _save_torchvision(path, seed):
  torch = pytest.importorskip('torch')
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  torch.save(torch_reference.randomize(
      torch_reference.TorchvisionResNetReference((1, 1), width=8),
      seed=seed).state_dict(), path)
  return str(path)


def test_imagenet_backbone_features(
    data_root, tmp_path, fast_compile):  # noqa: F811
  """`backbone_init_from`: the features of the model with the file's
  weights (as a workdir holding them gives), identified by the file."""
  del fast_compile
  path = _save_torchvision(tmp_path / 'resnet.pth', seed=2)
  config = _imagenet_config(data_root, path, str(tmp_path / 'features'))
  backbone = features_lib.open_backbone(config)
  with open(path, 'rb') as file:
    digest = hashlib.sha256(file.read()).hexdigest()
  identity = backbone.identity(config)
  assert identity['backbone_init_from'] == path
  assert identity['backbone_init_sha256'] == digest
  assert 'backbone_workdir' not in identity

  # The same variables in a workdir compute the same features.
  recognition = config.detection.backbone_config
  fresh = models.build_model(recognition).init(
      jax.random.key(backbones.FRESH_SEED),
      np.zeros(models.input_shape(recognition), np.float32), train=False)
  checkpoint.save_variables(
      tmp_path / 'converted', convert.load_backbone_init(
          path, jax.device_get(fresh), recognition), manet.get_config('tiny'))
  from_workdir = features_lib.open_backbone(
      tiny_config(data_root, backbone_workdir=str(tmp_path / 'converted')))
  source = records.Mma52Records(config.data.data_dir, 'small', 'validation')
  frames = records.decode_frames(source[0]['jpegs'],
                                 np.arange(len(source[0]['jpegs'])))
  ours, reference = (
      features_lib.video_features(
          features_lib.FeatureComputer(opened, batch_size=4), frames,
          frame_stride=4)
      for opened in (backbone, from_workdir))
  # The same variables and computation on this machine: bit for bit.
  np.testing.assert_array_equal(ours, reference)

  features_lib.extract_features(config, log=lambda *_: None)
  assert features_lib.check_features(config)['identity'] == identity
  _save_torchvision(path, seed=3)  # Other weights in the same file.
  with pytest.raises(detection_pipeline.FeaturesError,
                     match='stale.*backbone_init_sha256='):
    features_lib.check_features(config)


def test_one_backbone_source():
  config = ml_collections.ConfigDict(mmad.get_config().to_dict())
  config.detection.backbone_workdir = 'workdirs/manet'
  config.detection.backbone_init_from = 'resnet50.pth'
  with pytest.raises(ValueError, match='both name the backbone; set one'):
    config_checks.check_config(config)
