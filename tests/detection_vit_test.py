"""A ViT as the MMA-52 detector's backbone: from features and end to end."""

import jax
import numpy as np
import pytest

from configs import videomae
from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import models
from maxmicro import train
from maxmicro.detection import features as features_lib
from tests import tiny_run
from tests.tiny_run import fast_compile  # noqa: F401  pylint: disable=unused-import

CLASSES = (0, 9, 24)
NUM_STEPS = 4


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  """The tiny fake MMA-52, with an untrained tiny ViT as `vit_backbone/`."""
  root = tiny_run.build_tiny_mma52(tmp_path_factory.mktemp('mma52_vit'),
                                   CLASSES)
  backbone = videomae.get_config('tiny')
  variables = models.build_model(backbone).init(
      jax.random.key(0), np.zeros(models.input_shape(backbone), np.float32))
  checkpoint.save_variables(root / 'vit_backbone', variables, backbone)
  return root


def _config(root, **detection_overrides):
  config = tiny_run.tiny_mma52_config(root, CLASSES)
  config.detection.update(backbone_workdir=str(root / 'vit_backbone'),
                          **detection_overrides)
  config.train.update(num_train_steps=NUM_STEPS, log_every_steps=2,
                      checkpoint_every_steps=NUM_STEPS)
  config.lock()
  config_checks.check_config(config)
  return config


@pytest.mark.parametrize('end_to_end', [False, True])
def test_detector_trains_on_a_vit(data_root, tmp_path, end_to_end,
                                  fast_compile):  # noqa: F811
  del fast_compile
  config = _config(data_root, end_to_end=end_to_end)
  results = train.train_and_evaluate(config, str(tmp_path),
                                     log=lambda *_: None)
  assert 0 <= results['mAP'] <= 1


def test_vit_features_are_the_tubelets_features(data_root):
  backbone = videomae.get_config('tiny')
  assert features_lib.feature_dim(backbone) == backbone.model.embed_dim
  fn = features_lib.make_feature_fn(backbone, batch_size=2)
  manager, step, _ = checkpoint.open_for_reading(
      str(data_root / 'vit_backbone'))
  variables = checkpoint.restore_saved_variables(manager, step)
  manager.close()
  trunk = {'params': variables['params']['backbone']}
  clips = np.random.default_rng(0).integers(
      0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
  steps = np.asarray(fn(trunk, clips))
  assert steps.shape == (2, 4, backbone.model.embed_dim)
  np.testing.assert_array_equal(steps[:, 0], steps[:, 1])  # One tubelet.
