"""Model FLOPs of a traced JAX function: its convolutions and matmuls.

XLA's cost analysis of a compiled program is the usual source, but on a GPU
it misses the convolutions that XLA hands to cuDNN as custom calls (a ResNet
train step then "costs" a fraction of what it computes). Counting the jaxpr
works the same on every backend. Convolutions count only the multiplies that
read a real input element, not padding or the zeros of a dilated input (the
input gradient of a strided convolution), as XLA's HloCostAnalysis does;
elementwise work (BatchNorm, activations, the optimizer) is left out, as
model FLOP utilisation conventionally does.
"""

import math

from jax.extend import core


def _valid_taps(in_size, out_size, window, stride, pad_low, lhs_dilation,
                rhs_dilation):
  """(output, kernel) index pairs along one axis that read an input element."""
  last = (in_size - 1) * lhs_dilation
  taps = 0
  for out_index in range(out_size):
    for kernel_index in range(window):
      position = out_index * stride + kernel_index * rhs_dilation - pad_low
      if 0 <= position <= last and position % lhs_dilation == 0:
        taps += 1
  return taps


def _conv_flops(eqn):
  lhs, rhs = (var.aval for var in eqn.invars[:2])
  out = eqn.outvars[0].aval
  params = eqn.params
  lhs_spec, rhs_spec, out_spec = params['dimension_numbers']
  taps = 1
  for axis, (lhs_dim, rhs_dim, out_dim) in enumerate(
      zip(lhs_spec[2:], rhs_spec[2:], out_spec[2:])):
    taps *= _valid_taps(lhs.shape[lhs_dim], out.shape[out_dim],
                        rhs.shape[rhs_dim], params['window_strides'][axis],
                        params['padding'][axis][0],
                        params['lhs_dilation'][axis],
                        params['rhs_dilation'][axis])
  # rhs_spec[:2] are the kernel's output and (per group) input features.
  return (2 * out.shape[out_spec[0]] * rhs.shape[rhs_spec[0]] *
          rhs.shape[rhs_spec[1]] * taps)


def _dot_flops(eqn):
  (lhs_contracting, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval
  return (2 * math.prod(eqn.outvars[0].aval.shape) *
          math.prod(lhs.shape[dim] for dim in lhs_contracting))


def count_flops(jaxpr):
  """Multiply-adds x 2 of every convolution and matmul in `jaxpr`.

  Args:
    jaxpr: a `Jaxpr` or `ClosedJaxpr`, e.g. `jax.jit(f).trace(...).jaxpr`.
  """
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  flops = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      flops += _conv_flops(eqn)
    elif eqn.primitive.name == 'dot_general':
      flops += _dot_flops(eqn)
    # A scan body runs `length` times; a while body counts once (unknown).
    repeats = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
    for inner in core.jaxprs_in_params(eqn.params):
      flops += repeats * count_flops(inner)
  return flops
