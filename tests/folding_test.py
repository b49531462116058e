"""BatchNorm folded into the convolutions: the same model to float rounding."""

import jax
import numpy as np
import pytest

from configs import manet
from maxmicro import models
from maxmicro.models import folding
from tests.tiny_run import fast_compile  # pylint: disable=unused-import

pytestmark = pytest.mark.usefixtures('fast_compile')


def _config(stage_sizes, width, num_segments):
  config = manet.get_config('tiny')
  config.model.stage_sizes = stage_sizes
  config.model.width = width
  config.model.num_segments = num_segments
  return config


def _random_variables(model, video, seed):
  """Variables at an O(1) scale with BatchNorm that does something.

  Kernels ~ N(0, 1/fan_in); BatchNorm in the ranges of
  tests/torch_reference.py's `randomize` (at init it is the identity).
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), video)
  ranges = {'scale': (0.5, 1.0), 'bias': (-0.2, 0.2), 'mean': (-0.2, 0.2),
            'var': (0.5, 1.5)}

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) / fan_in**0.5).astype(
          np.float32)
    return rng.uniform(*ranges[name], leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize('stage_sizes,width,num_segments,size', [
    ((1, 1), 8, 4, 32),  # The tiny config of the suite.
    ((3, 4, 6, 3), 8, 2, 32),  # ResNet-50's layout, narrow and small.
])
def test_folded_model_gives_the_same_outputs(stage_sizes, width, num_segments,
                                             size):
  config = _config(stage_sizes, width, num_segments)
  model = models.build_model(config)
  video = jax.random.normal(jax.random.key(1),
                            (2, num_segments, size, size, 3))
  variables = _random_variables(model, video, seed=0)
  folded_model = folding.fold_model(model)
  folded = folding.fold_variables(variables)

  assert set(folded) == {'params'}
  expected_shapes = jax.eval_shape(folded_model.init, jax.random.key(0),
                                   video)
  assert set(expected_shapes) == {'params'}
  assert (jax.tree.map(np.shape, folded['params']) ==
          jax.tree.map(np.shape, expected_shapes['params']))

  reference = jax.jit(model.apply)(variables, video)
  outputs = jax.jit(folded_model.apply)(folded, video)
  for key in ('action_logits', 'embedding', 'features'):
    scale = np.abs(reference[key]).max()
    assert scale > 0, key
    # Folding reorders float32 products and sums through the whole trunk
    # (scale * conv(x) against conv(x) * scale): ulps per layer, a few 1e-6
    # of the outputs' scale after the blocks; 1e-5 bounds that.
    np.testing.assert_allclose(outputs[key], reference[key], rtol=1e-5,
                               atol=1e-5 * scale, err_msg=key)
  # The same arithmetic inside a jitted function, on jax arrays. The folded
  # scale gamma * rsqrt(var + eps) is exact to about 1e-7 relative per
  # float32 step in either, but XLA may fuse or approximate rsqrt otherwise
  # than numpy (AVX-512 kernels differ), and the folded bias
  # beta - mean * scale cancels: an element near zero then has a large
  # relative error, so the bound is relative plus a few ulps (1e-6) of the
  # tensor's largest magnitude.
  traced = jax.jit(folding.fold_variables)(jax.device_put(variables))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max()), traced, folded)


def test_batch_norm_without_a_convolution_is_refused():
  variables = {'params': {'head_bn': {'scale': np.ones(2),
                                      'bias': np.zeros(2)}},
               'batch_stats': {'head_bn': {'mean': np.zeros(2),
                                           'var': np.ones(2)}}}
  with pytest.raises(ValueError, match='head_bn follows no convolution'):
    folding.fold_variables(variables)
