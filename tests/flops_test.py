"""benchmarks/flops.py against XLA:CPU's cost analysis of the same programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import flops
from configs import manet
from maxmicro import models


def xla_flops(traced):
  cost = traced.lower().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost['flops']


@pytest.mark.parametrize('size,strides,padding,rhs_dilation', [
    (3, (1, 1), ((1, 1), (1, 1)), (1, 1)),
    (3, (2, 2), ((1, 1), (1, 1)), (1, 1)),  # Input gradient dilates the input.
    (7, (2, 2), ((3, 3), (3, 3)), (1, 1)),  # The stem.
    (3, (2, 1), 'VALID', (1, 1)),
    (3, (1, 1), ((2, 2), (2, 2)), (2, 2)),
])
def test_convolution_and_its_gradients_count_what_xla_counts(
    size, strides, padding, rhs_dilation):
  x = jnp.ones((2, 15, 13, 8))
  kernel = jnp.ones((size, size, 8, 16))

  def conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, rhs_dilation=rhs_dilation,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def forward_and_backward(x, kernel, cotangent):
    out, vjp = jax.vjp(conv, x, kernel)
    return out, vjp(cotangent)

  cotangent = jnp.ones(jax.eval_shape(conv, x, kernel).shape)
  traced = jax.jit(forward_and_backward).trace(x, kernel, cotangent)
  # Three convolutions and nothing else: the counts agree exactly.
  assert flops.count_flops(traced.jaxpr) == xla_flops(traced)


def test_matmuls_count_contracted_and_batch_dimensions():
  traced = jax.jit(lambda a, b: jnp.einsum('bij,bjk->bik', a, b)).trace(
      jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6)))
  assert flops.count_flops(traced.jaxpr) == 2 * 3 * 4 * 5 * 6
  assert flops.count_flops(traced.jaxpr) == xla_flops(traced)


def test_a_scan_body_counts_once_per_step():
  def repeated(a):
    return jax.lax.scan(lambda c, _: (c @ a, None), a, length=5)[0]

  traced = jax.jit(repeated).trace(jnp.ones((4, 4)))
  assert flops.count_flops(traced.jaxpr) == 5 * 2 * 4 * 4 * 4


def test_resnet50_gradient_is_xla_count_less_elementwise_work():
  """The MANet-R50 loss gradient, small frames: convs, 1x1 matmuls, heads."""
  config = manet.get_config('paper')
  model = models.build_model(config)
  video = jnp.ones((1, 8, 64, 64, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), video)

  def loss(params, batch_stats, video):
    outputs, _ = model.apply(
        {'params': params, 'batch_stats': batch_stats}, video, train=True,
        mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)})
    return jnp.sum(outputs['action_logits']) + jnp.sum(outputs['embedding'])

  traced = jax.jit(jax.grad(loss)).trace(
      variables['params'], variables['batch_stats'],
      jax.ShapeDtypeStruct(video.shape, video.dtype))
  counted, xla = flops.count_flops(traced.jaxpr), xla_flops(traced)
  # XLA also counts BatchNorm, ReLU and the like: about 1% more.
  assert 0.95 * xla < counted < xla
  # A counting bound (which operations count: XLA's ~1% of elementwise work
  # beyond ours), not rounding.
  np.testing.assert_allclose(counted, xla, rtol=0.03)
