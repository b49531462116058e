"""XLA compile options for maxmicro's jitted steps, chosen per backend.

XLA:CPU in jaxlib 0.10 hands convolutions and matmuls to YNNPACK, which runs
each of them on one thread; Eigen runs them on every core (a 3x3, 64-channel
convolution of 16 frames of 56x56, on 2 cores: 37 ms in YNNPACK, 21 ms in
Eigen). Only reductions stay with YNNPACK, where they run faster than XLA's
own loops (BatchNorm's statistics and their gradients). The CPU train step
gains ~9% (benchmarks/RESULTS.md). GPU and TPU keep XLA's defaults.
"""

import jax

_CPU_OPTIONS = {
    'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE',
}


def compiler_options():
  """`jax.jit(..., compiler_options=...)` for the default backend, or None."""
  if jax.default_backend() == 'cpu':
    return dict(_CPU_OPTIONS)
  return None
