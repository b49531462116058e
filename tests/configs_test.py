"""Every config loads with each documented argument."""

import math

import pytest

from configs import common
from configs import i3d
from configs import manet
from configs import slowonly
from configs import tsm
from configs import tsn
from configs import videomae
from configs import vswin
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train


@pytest.mark.parametrize('module', [manet, tsm, tsn])
@pytest.mark.parametrize('arg', [None, '', 'paper', 'tiny', 'paper,tiny'])
def test_loads(module, arg):
  config = module.get_config(arg)
  assert config.model.num_classes == 52
  assert config.model.use_shift == (module is not tsn)
  assert config.model.use_se == (module is manet)


@pytest.mark.parametrize('module, arg, width', [
    (videomae, None, 768), (videomae, 'base', 768), (videomae, 'small', 384),
    (videomae, 'giant,remat', 1408), (videomae, 'size=huge', 1280),
    (videomae, 'tiny', 64), (vswin, None, 96), (vswin, 'tiny', 96),
    (vswin, 'base', 128), (vswin, 'large,remat', 192), (vswin, 'micro', 16)])
def test_clip_backbones_load_by_size_name(module, arg, width):
  """`configs/videomae.py:base` and `configs/vswin.py:large,remat` as the
  README writes them: a bare size name picks the size."""
  config = module.get_config(arg)
  assert config.model.embed_dim == width
  assert config.model.remat == ('remat' in (arg or ''))


@pytest.mark.parametrize('module, frames, interval', [(i3d, 32, 2),
                                                      (slowonly, 8, 8)])
@pytest.mark.parametrize('arg', [None, 'tiny'])
def test_3d_resnets_load_with_dense_clips(module, frames, interval, arg):
  config = module.get_config(arg)
  assert config.model.family == 'resnet3d'
  if not arg:
    assert (config.model.num_segments, config.data.frame_interval) == (
        frames, interval)


def test_paper_is_the_official_recipe():
  config = manet.get_config('paper')
  assert config.model.embedding_dim == 300
  assert (config.loss.embedding, config.loss.embedding_weight) == ('mse', 50.0)
  assert config.model.depth == 50 and config.model.stage_sizes is None
  assert (config.model.num_segments, config.model.fold_div) == (8, 8)
  assert config.optim.fc_lr5 and config.optim.grad_clip_norm == 20.0


def test_default_is_contrastive():
  assert manet.get_config().loss.embedding == 'contrastive'


def test_unknown_argument_names_the_allowed_ones():
  with pytest.raises(ValueError, match='allowed: paper, tiny'):
    manet.get_config('papr')


def test_parse_arg_values():
  parsed = common.parse_arg('a,b=3,c=x', a=False, b=1, c='y')
  assert (parsed.a, parsed.b, parsed.c) == (True, 3, 'x')
  with pytest.raises(ValueError, match='needs a value'):
    common.parse_arg('b', b=1)


def test_videomae_stops_at_38_epochs_of_a_40_epoch_cosine():
  config = videomae.get_config('tiny')
  config.update_from_flattened_dict({
      'train.num_epochs': 38, 'optim.schedule_epochs': 40.0,
      'optim.warmup_epochs': 2.0})
  trainer = train.make_trainer(config, tasks.get_task(config),
                               sharding.make_mesh(), num_train_examples=40)
  steps_per_epoch = 40 // config.train.global_batch_size
  assert trainer.total_steps == 38 * steps_per_epoch
  peak = float(trainer.schedule(2 * steps_per_epoch))
  last = float(trainer.schedule(38 * steps_per_epoch))
  # optax's float32 cosine against the closed form in float64.
  assert last == pytest.approx(
      peak * 0.5 * (1 + math.cos(math.pi * 36 / 38)), rel=1e-5)
  assert last > 0
