"""Tests for maxmicro.models: shapes, parameter counts, switches, modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import i3d
from configs import manet
from configs import tsm
from configs import tsn
from configs import vswin
from maxmicro import config_checks
from maxmicro import models
from maxmicro import ops
from maxmicro.models import resnet
from tests.tiny_run import fast_compile  # pylint: disable=unused-import

pytestmark = pytest.mark.usefixtures('fast_compile')


def init(model, video):
  return jax.jit(model.init)({'params': jax.random.key(0)}, video)


def count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def abstract_variables(config, frames=8, size=224):
  model = models.build_model(config)
  video = jax.ShapeDtypeStruct((2, frames, size, size, 3), jnp.float32)
  return model, jax.eval_shape(
      lambda v: model.init({'params': jax.random.key(0)}, v), video)


def test_paper_config_has_the_official_parameter_count():
  model, variables = abstract_variables(manet.get_config('paper'))
  params = variables['params']
  se = sum(int(np.prod(leaf.shape))
           for path, leaf in jax.tree_util.tree_leaves_with_path(params)
           if "'se'" in jax.tree_util.keystr(path))
  assert count(params) == 32_284_252
  assert count(params['backbone']) - se == 23_508_032  # ResNet-50 trunk.
  assert se == 7_964_672
  assert {'fc_cls', 'fc_emb', 'fc_emb_t'} <= set(params)
  assert params['fc_emb_t']['kernel'].shape == (300, 300)
  # T=8 at 224x224: outputs averaged over time.
  outputs = jax.eval_shape(
      lambda v, x: model.apply(v, x), variables,
      jax.ShapeDtypeStruct((2, 8, 224, 224, 3), jnp.float32))
  assert outputs['action_logits'].shape == (2, 52)
  assert outputs['embedding'].shape == (2, 300)
  assert outputs['features'].shape == (2, 2048)


def test_se_gates_start_as_torch_linear_layers():
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's `nn.Linear` default (Flax's
  LeCun normal would have about 1.7x the spread)."""
  variables = jax.jit(resnet.SqueezeExcite(reduction=4).init)(
      jax.random.key(0), jnp.zeros((1, 1, 1, 1024)))
  for name, fan_in in (('fc1', 1024), ('fc2', 256)):
    kernel = np.asarray(variables['params'][name]['kernel'])
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound, name
    assert np.abs(kernel).max() > 0.99 * bound, name
    # Statistical bounds on 262,144 uniform draws, not rounding: one standard
    # error is 0.09% of bound / sqrt(3) for the std and 0.11% of the bound for
    # the mean, so 2% is ~20 of them; Flax's LeCun normal would be 73% off.
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02,
                               err_msg=name)
    np.testing.assert_allclose(kernel.mean(), 0, atol=0.02 * bound,
                               err_msg=name)


def test_tsm_and_tsn_have_no_se_parameters():
  # TSM and TSN differ only in the (parameter-free) shift.
  for module in (tsm, tsn):
    _, variables = abstract_variables(module.get_config('paper'))
    assert count(variables['params']) == 32_284_252 - 7_964_672


@pytest.mark.parametrize('depth,trunk_params', [
    (18, 11_176_512), (34, 21_284_672), (50, 23_508_032),
    (101, 42_500_160)])  # torchvision's counts without `fc`.
def test_depths_match_torchvision(depth, trunk_params):
  config = tsn.get_config()
  config.model.depth = depth
  _, variables = abstract_variables(config, size=64)
  assert count(variables['params']['backbone']) == trunk_params


def test_body_head_is_optional():
  config = manet.get_config('tiny')
  config.model.body_head = True
  model = models.build_model(config)
  video = jnp.zeros((2, 4, 32, 32, 3))
  variables = init(model, video)
  assert variables['params']['fc_body']['kernel'].shape[-1] == 7
  assert model.apply(variables, video)['body_logits'].shape == (2, 7)


def test_batch_stats_change_only_in_training():
  config = manet.get_config('tiny')
  model = models.build_model(config)
  video = jax.random.normal(jax.random.key(1), (2, 4, 32, 32, 3))
  variables = init(model, video)
  eval_out = model.apply(variables, video)
  assert not isinstance(eval_out, tuple)  # Nothing mutable in eval.
  _, updates = model.apply(variables, video, train=True,
                           rngs={'dropout': jax.random.key(2)},
                           mutable=['batch_stats'])
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(updates['batch_stats'])
  assert all(np.any(b != a) for b, a in zip(before, after))


def test_dropout_only_in_training():
  config = manet.get_config('tiny')
  config.model.dropout_rate = 0.5
  model = models.build_model(config)
  video = jax.random.normal(jax.random.key(1), (2, 4, 32, 32, 3))
  variables = init(model, video)
  first, second = (model.apply(variables, video)['action_logits']
                   for _ in range(2))
  # Eval mode: the same computation twice on this machine, bit for bit.
  np.testing.assert_array_equal(first, second)
  train_logits = [
      model.apply(variables, video, train=True, mutable=['batch_stats'],
                  rngs={'dropout': jax.random.key(seed)})[0]['action_logits']
      for seed in (3, 4)]
  assert np.any(train_logits[0] != train_logits[1])


def test_outputs_are_frame_means():
  # TSN applies the network per frame: the clip output is the mean of the
  # outputs of its frames scored one at a time.
  config = tsn.get_config('tiny')
  config.model.num_segments = 1
  single = models.build_model(config)
  config.model.num_segments = 4
  clip = models.build_model(config)
  video = jax.random.normal(jax.random.key(5), (1, 4, 32, 32, 3))
  variables = init(clip, video)
  per_frame = single.apply(variables, video.reshape(4, 1, 32, 32, 3))
  clip_out = clip.apply(variables, video)
  for key in ('action_logits', 'embedding', 'features'):
    # The same per-frame outputs averaged over 4 frames by two reductions:
    # float32 sums of 4 terms, a few ulps of the largest (1e-5 relative,
    # 1e-6 absolute for means near zero).
    np.testing.assert_allclose(clip_out[key][0], per_frame[key].mean(0),
                               rtol=1e-5, atol=1e-6)


def test_shift_and_se_change_the_function():
  video = jax.random.normal(jax.random.key(6), (1, 4, 32, 32, 3))
  config = tsn.get_config('tiny')
  variables = init(models.build_model(config), video)
  config.model.use_shift = True
  tsm_out = models.build_model(config).apply(variables, video)
  config.model.use_shift = False
  tsn_out = models.build_model(config).apply(variables, video)
  assert np.any(tsm_out['features'] != tsn_out['features'])


def test_bfloat16_compute_keeps_float32_parameters():
  config = manet.get_config('tiny')
  config.model.dtype = 'bfloat16'
  model = models.build_model(config)
  video = jnp.ones((1, 4, 32, 32, 3))
  variables = init(model, video)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {
      jnp.dtype('float32')}
  outputs = model.apply(variables, video)
  assert outputs['action_logits'].dtype == jnp.float32


def test_auto_dtype_is_float32_on_cpu():
  assert models.compute_dtype('auto') == jnp.float32


@pytest.mark.parametrize('field,value,message', [
    ('depth', 42, r'config\.model\.depth=42'),
    ('dtype', 'float16', r"config\.model\.dtype='float16'"),
])
def test_bad_config_values_are_named(field, value, message):
  """Checked once, from the tables `build_model` dispatches on."""
  config = manet.get_config('tiny')
  config.model[field] = value
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config)


@pytest.mark.parametrize('config_of, section, field, value, message', [
    (lambda: vswin.get_config('micro'), 'model', 'num_heads', (1, 3),
     r'stage 1 is 32 wide .* 3 heads'),
    (lambda: vswin.get_config('micro'), 'model', 'depths', (2, 2, 2),
     r'config\.model\.depths=\(2, 2, 2\) and config\.model\.num_heads'),
    (lambda: vswin.get_config('micro'), 'optim', 'layer_decay', 0.75,
     r"layer_decay=0\.75: .*family='swin'"),
    (lambda: i3d.get_config('tiny'), 'model', 'inflate',
     ((1, 1), 1, 1, 0), r'config\.model\.inflate\[0\]=\(1, 1\) .* \(1\)'),
    (lambda: i3d.get_config('tiny'), 'model', 'num_segments', 12,
     r'num_segments=12 is not a multiple .* \(8:'),
    (lambda: i3d.get_config('tiny'), 'model', 'inflate_style', '3x3',
     r"config\.model\.inflate_style='3x3' is not allowed"),
])
def test_bad_clip_backbone_values_are_named(config_of, section, field, value,
                                            message):
  """Each family's own rules (`models.FAMILIES`: `check_config`, `choices`)."""
  config = config_of()
  config[section][field] = value
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config)


def test_wrong_frame_count_is_named():
  model = models.build_model(manet.get_config('tiny'))
  with pytest.raises(ValueError, match='num_segments=4'):
    model.init({'params': jax.random.key(0)}, jnp.zeros((1, 3, 32, 32, 3)))


@pytest.mark.parametrize('channels_in,channels_out,stride', [
    (8, 16, 1), (16, 8, 1), (8, 16, 2), (16, 8, 2)])
def test_1x1_conv_as_matmul_matches_the_convolution(channels_in, channels_out,
                                                    stride):
  """The 1x1 matmul and its custom VJP against `lax.conv_general_dilated`."""
  x_key, w_key, g_key = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(x_key, (2, 7, 7, channels_in))
  w = jax.random.normal(w_key, (1, 1, channels_in, channels_out))
  dimension_numbers = ('NHWC', 'HWIO', 'NHWC')

  def apply(conv):
    return lambda x, w: conv(x, w, (stride, stride), 'VALID',
                             dimension_numbers=dimension_numbers)

  want, want_vjp = jax.vjp(apply(jax.lax.conv_general_dilated), x, w)
  got, got_vjp = jax.vjp(apply(ops.conv_or_matmul), x, w)
  g = jax.random.normal(g_key, want.shape)
  # A 1x1 convolution as a matmul (on CPU): the same float32 products summed
  # by another kernel. Dots of 8 or 16 unit normals (values up to ~15; the
  # kernel's gradient sums 98 positions, up to ~30): a few ulps of those.
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for got_grad, want_grad in zip(jax.jit(got_vjp)(g), want_vjp(g)):
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)
