"""The clip backbone families (ViT, Video Swin, 3D ResNets) through the
trainer: each trains, resumes bitwise after a kill, serves eval / predict /
submit, and learns its training set."""

import csv
import json
import os

import pytest

from configs import i3d
from configs import slowonly
from configs import videomae
from configs import vswin
from maxmicro import reporting
from tests import tiny_run

fast_compile = tiny_run.fast_compile

# Each clip backbone's seconds-on-a-CPU config, by its config file's name.
TINY_CONFIGS = {
    'videomae': lambda: videomae.get_config('tiny'),
    'vswin': lambda: vswin.get_config('micro'),
    'i3d': lambda: i3d.get_config('tiny'),
    'slowonly': lambda: slowonly.get_config('tiny'),
}


def _tiny_config(name, built, **train_overrides):
  config = TINY_CONFIGS[name]()
  for key, value in built.overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  config.train.update({'num_train_steps': tiny_run.NUM_STEPS,
                       'log_every_steps': 1, 'checkpoint_every_steps': 2,
                       'eval_every_epochs': None, **train_overrides})
  config.lock()
  return config


def _losses(workdir):
  return {r['step']: r['loss']
          for r in reporting.read_metrics(workdir, 'train')}


@pytest.mark.usefixtures('fast_compile')
@pytest.mark.parametrize('name', sorted(TINY_CONFIGS))
def test_trains_resumes_and_serves(name, built_fake_ma52, tmp_path):
  reference, interrupted = str(tmp_path / 'ref'), str(tmp_path / 'cut')
  config = _tiny_config(name, built_fake_ma52)
  tiny_run.run(config, reference)
  assert set(_losses(reference)) == {1, 2, 3, 4}
  # Killed after step 3 (the last checkpoint is step 2), then resumed. Both
  # runs are on this machine, so the losses are equal bit for bit.
  tiny_run.run(config, interrupted, stop_at_step=3)
  _, lines = tiny_run.run(config, interrupted)
  assert 'resuming from step 2' in lines
  assert _losses(interrupted) == _losses(reference)

  completed = tiny_run.run_py(f'--workdir={reference}', '--mode=eval')
  assert completed.returncode == 0, completed.stderr
  assert 'f1_mean' in completed.stdout
  video = sorted((built_fake_ma52.manual_dir / 'videos_val').glob('*.mp4'))[0]
  completed = tiny_run.run_py(f'--workdir={reference}', '--mode=predict',
                              f'--video={video}')
  assert completed.returncode == 0, completed.stderr
  with open(os.path.join(reference, 'predictions.json')) as file:
    assert len(json.load(file)[str(video)]) == 5
  completed = tiny_run.run_py(f'--workdir={reference}', '--mode=submit')
  assert completed.returncode == 0, completed.stderr
  with open(os.path.join(reference, 'prediction.csv'), newline='') as file:
    assert len(list(csv.reader(file))) == 1 + 52


@pytest.mark.parametrize('name', sorted(TINY_CONFIGS))
def test_learns_the_fake_training_set(name, built_fake_ma52, tmp_path):
  """Above chance (1/52) on the clips it trained on, after 300 steps.

  From scratch, not as the recipes fine-tune a pre-trained model: AdamW at
  3e-3 with the backbone at the head's rate, and no colour jitter or
  erasing (`augment_test` checks those). With the ViT recipe's 0.1x backbone
  and full augmentation, 120 steps end at chance on some CPUs and just above
  it on others; this setting ends, over seeds 0-2 on one CPU, at 22-30%
  (ViT), 12-19% (Swin), 32-41% (I3D) and 49-51% (SlowOnly), clear of the
  bound.
  """
  config = _tiny_config(name, built_fake_ma52, num_train_steps=300,
                        checkpoint_every_steps=300, global_batch_size=8,
                        log_every_steps=100)
  config.unlock()
  config.optim.name = 'adamw'
  config.optim.weight_decay = 0.01
  config.data.eval_split = 'train'
  config.data.color_jitter = (0.0, 0.0, 0.0, 0.0)
  config.data.erase_probability = 0.0
  config.optim.warmup_epochs = 0.0
  config.optim.base_learning_rate = 3e-3
  config.optim.base_batch_size = 8
  config.optim.backbone_lr_multiplier = 1.0
  config.lock()
  result, _ = tiny_run.run(config, str(tmp_path))
  # Chance is 1/52 (2 of 104 clips); 6 right is far beyond it (binomial
  # p < 1e-2).
  assert result['action_top1'] > 6 / 104, result
