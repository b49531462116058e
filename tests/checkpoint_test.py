"""Workdirs from bare variables, step selection, and the saved config."""

import jax
import numpy as np
import pytest

from configs import manet
from maxmicro import checkpoint
from maxmicro import evaluate
from maxmicro import models
from maxmicro import predict
from maxmicro import sharding
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def _tiny_variables(config, seed=0):
  model = models.build_model(config)
  return jax.device_get(model.init(
      jax.random.key(seed), np.zeros((1, 4, 32, 32, 3), np.float32)))


def test_save_variables_round_trip(tmp_path):
  config = manet.get_config('tiny')
  variables = _tiny_variables(config)
  checkpoint.save_variables(str(tmp_path), variables, config, step=7)
  manager, step, saved = checkpoint.open_for_reading(str(tmp_path))
  assert step == 7
  assert saved.to_dict() == config.to_dict()  # Tuples come back as tuples.
  assert not checkpoint.has_item(manager, step, 'train')
  restored = evaluate.restore_variables(
      manager, step, saved, sharding.replicated(sharding.make_mesh()))
  # The saved float32 arrays come back as written: exact.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored),
               variables)
  with pytest.raises(checkpoint.CheckpointError, match='steps 7'):
    checkpoint.open_for_reading(str(tmp_path), which='3')
  with pytest.raises(checkpoint.CheckpointError, match='not latest, best'):
    checkpoint.open_for_reading(str(tmp_path), which='newest')
  manager.close()


def test_a_workdir_saved_before_newer_fields_predicts_as_it_did(tmp_path):
  """A config saved without the fields added since (backbone family, dense
  sampling, the ViT recipe's augmentations) reads with their old meaning."""
  config = manet.get_config('tiny')
  variables = _tiny_variables(config)
  config.unlock()
  for field in checkpoint._ADDED_RECOGNITION_FIELDS:  # pylint: disable=protected-access
    section, name = field.split('.')
    del config[section][name]
  checkpoint.save_variables(str(tmp_path), variables, config)
  manager, _, saved = checkpoint.open_for_reading(str(tmp_path))
  manager.close()
  assert saved.model.family == 'resnet' and saved.model.embedding_head
  assert saved.data.frame_interval is None
  assert saved.data.train_crop == 'multi_scale'
  frames = np.random.default_rng(0).integers(0, 256, (12, 40, 48, 3),
                                             np.uint8)
  assert predict.load(str(tmp_path)).scores(frames).shape == (52,)


def test_training_starts_from_saved_variables(built_fake_ma52, tmp_path):
  config = tiny_run.tiny_config(built_fake_ma52, num_train_steps=1)
  variables = _tiny_variables(config, seed=3)
  checkpoint.save_variables(str(tmp_path), variables, config)
  _, lines = tiny_run.run(config, str(tmp_path))
  assert any('starting from the variables of checkpoint step 0' in line
             for line in lines)
  manager, step, _ = checkpoint.open_for_reading(str(tmp_path))
  assert step == 1 and checkpoint.has_item(manager, step, 'train')
  trained = jax.device_get(evaluate.restore_variables(
      manager, step, config, sharding.replicated(sharding.make_mesh())))
  manager.close()
  # One small step from the saved variables, not from a fresh init.
  # One SGD step moves a weight by at most lr x the clipped gradient norm
  # (5e-4 x 20 = 1e-2, and a 5e-8 relative weight decay); a fresh init
  # differs by the kernel's scale (std 0.07).
  np.testing.assert_allclose(
      trained['params']['backbone']['conv1']['kernel'],
      variables['params']['backbone']['conv1']['kernel'], atol=1e-2)


def test_best_step_is_highest_top1(tmp_path):
  config = manet.get_config('tiny')
  variables = _tiny_variables(config)
  manager = checkpoint.make_manager(str(tmp_path), keep=1)
  for step, top1 in ((1, 0.3), (2, None), (3, 0.1), (4, None)):
    checkpoint.save(manager, step, variables=variables, config=config,
                    metrics=None if top1 is None else {'action_top1': top1})
  manager.wait_until_finished()
  # The last one (keep=1) and the best by validation top-1 survive.
  assert list(manager.all_steps()) == [1, 4]
  assert manager.best_step() == 1
  assert checkpoint.select_step(manager, 'best') == 1
  manager.close()
