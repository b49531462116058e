"""A clip backbone (ViT, Video Swin) as the MMA-52 detector's backbone: from
features and end to end."""

import jax
import numpy as np
import pytest

from tests.clip_backbones_test import TINY_CONFIGS
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
  """The tiny fake MMA-52, with each clip backbone's untrained tiny model as
  `<name>_backbone/`."""
  root = tiny_run.build_tiny_mma52(tmp_path_factory.mktemp('mma52_clips'),
                                   CLASSES)
  for name, get_config in TINY_CONFIGS.items():
    backbone = get_config()
    variables = models.build_model(backbone).init(
        jax.random.key(0), np.zeros(models.input_shape(backbone), np.float32))
    checkpoint.save_variables(root / f'{name}_backbone', variables, backbone)
  return root


def _config(root, name, **detection_overrides):
  config = tiny_run.tiny_mma52_config(root, CLASSES)
  # Each backbone's features in their own folder: one folder holds the
  # features of one backbone (their provenance is checked).
  config.detection.update(backbone_workdir=str(root / f'{name}_backbone'),
                          features_dir=str(root / f'{name}_features'),
                          **detection_overrides)
  config.train.update(num_train_steps=NUM_STEPS, log_every_steps=2,
                      checkpoint_every_steps=NUM_STEPS)
  config.lock()
  config_checks.check_config(config)
  return config


@pytest.mark.parametrize('name', sorted(TINY_CONFIGS))
@pytest.mark.parametrize('end_to_end', [False, True])
def test_detector_trains_on_a_clip_backbone(data_root, tmp_path, name,
                                            end_to_end,
                                            fast_compile):  # noqa: F811
  del fast_compile
  config = _config(data_root, name, end_to_end=end_to_end)
  results = train.train_and_evaluate(config, str(tmp_path),
                                     log=lambda *_: None)
  assert 0 <= results['mAP'] <= 1


# (width of the pooled features, frames one step covers): a ViT's and a
# Swin's tubelet of 2 frames (the Swin's last stage twice its width of 16);
# I3D's temporal strides (2 x 2 x 2) and SlowOnly's none, the last stage 4
# x 4 x 2^3 wide.
@pytest.mark.parametrize('name, width, frames', [
    ('videomae', 64, 2), ('vswin', 32, 2), ('i3d', 128, 8),
    ('slowonly', 128, 1)])
def test_features_are_the_steps_features(data_root, name, width, frames):
  backbone = TINY_CONFIGS[name]()
  assert features_lib.feature_dim(backbone) == width
  fn = features_lib.make_feature_fn(backbone, batch_size=2)
  manager, step, _ = checkpoint.open_for_reading(
      str(data_root / f'{name}_backbone'))
  variables = checkpoint.restore_saved_variables(manager, step)
  manager.close()
  trunk = {collection: tree['backbone'] for collection, tree
           in variables.items() if 'backbone' in tree}
  num_frames = backbone.model.num_segments
  clips = np.random.default_rng(0).integers(
      0, 256, (2, num_frames, 32, 32, 3), dtype=np.uint8)
  steps = np.asarray(fn(trunk, clips))
  assert steps.shape == (2, num_frames, width)
  # Each step's feature repeated over the frames it covers, and no more.
  grouped = steps.reshape(2, num_frames // frames, frames, width)
  np.testing.assert_array_equal(grouped, grouped[:, :, :1].repeat(frames, 2))
  if num_frames > frames:
    assert not np.array_equal(grouped[:, 0], grouped[:, 1])
