"""maxmicro's XLA:CPU options: accepted, effective, same numbers."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import xla_options


def conv_then_batch_stats(x, kernel):
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y, jnp.mean(y, axis=(0, 1, 2))


def compiled_text(options, *args):
  return jax.jit(conv_then_batch_stats, compiler_options=options).lower(
      *args).compile().as_text()


def test_options_are_for_cpu_only_here():
  assert jax.default_backend() == 'cpu'
  assert xla_options.compiler_options() is not None


def ynn_wrapped_ops(hlo_text):
  """Opcodes inside the fused computations that YNNPACK fusions call."""
  ynn_calls = set(re.findall(r'calls=%([\w.-]+).*"__ynn_fusion"', hlo_text))
  ops = set()
  for block in hlo_text.split('\n\n'):
    if block.strip().split(' ', 1)[0].lstrip('%') in ynn_calls:
      ops.update(re.findall(r'= \S+ ([a-z][\w-]*)\(', block))
  return ops


def test_convolutions_leave_ynnpack_and_reductions_stay():
  """Fails if a jaxlib upgrade renames or ignores the options."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 28, 28, 32)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
  default = ynn_wrapped_ops(compiled_text(None, x, kernel))
  tuned = ynn_wrapped_ops(
      compiled_text(xla_options.compiler_options(), x, kernel))
  assert {'convolution', 'reduce'} <= default
  assert 'convolution' not in tuned
  assert 'reduce' in tuned


def test_same_numbers_as_xla_defaults():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 14, 14, 16)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 16, 8)).astype(np.float32)
  default = jax.jit(conv_then_batch_stats)(x, kernel)
  tuned = jax.jit(conv_then_batch_stats,
                  compiler_options=xla_options.compiler_options())(x, kernel)
  for a, b in zip(default, tuned):
    # maxmicro's options change fusion and reduction order: float32 rounding
    # of 144-term sums of unit normals, well under 1e-5.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
