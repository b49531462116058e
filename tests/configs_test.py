"""Every config loads with each documented argument."""

import pytest

from configs import common
from configs import manet
from configs import tsm
from configs import tsn


@pytest.mark.parametrize('module', [manet, tsm, tsn])
@pytest.mark.parametrize('arg', [None, '', 'paper', 'tiny', 'paper,tiny'])
def test_loads(module, arg):
  config = module.get_config(arg)
  assert config.model.num_classes == 52
  assert config.model.use_shift == (module is not tsn)
  assert config.model.use_se == (module is manet)


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
