"""BatchNorm folded into the convolutions before it, for inference.

In eval mode a BatchNorm is the affine map `y = x * s + (bias - mean * s)`
per channel, with `s = scale / sqrt(var + eps)`. After a bias-free
convolution `x = conv(u, kernel)` that is `conv(u, kernel * s) + b`: one
convolution with a bias, and no normalisation pass over the feature map.

  folded_model = folding.fold_model(models.build_model(config))
  folded_variables = folding.fold_variables(variables)  # once, at load
  folded_model.apply(folded_variables, video)  # == model.apply(variables, ...)

The same numbers to float rounding (tests/folding_test.py). On XLA:CPU an
eval-mode BatchNorm is already fused with the ReLU or residual add after it
into one elementwise pass, which a bias needs too: folding saves a multiply
per element and an op per layer, 4-6% of the CPU time of MANet-R50's
forward, and holds a second copy of the weights unless the first is
dropped; folded inside the forward instead (per call) it gained nothing
(benchmarks/RESULTS.md, "CPU inference"). Training needs the BatchNorm
layers, so this is for eval-mode scoring only.
"""

import functools

import flax

from maxmicro.models import resnet

# Each BatchNorm of `resnet.ResNet` and the convolution whose output it takes
# (siblings in the same block, or in the stem).
_CONV_OF_NORM = {'bn1': 'conv1', 'bn2': 'conv2', 'bn3': 'conv3',
                 'downsample_bn': 'downsample_conv'}


def fold_model(model):
  """A `VideoClassifier` like `model`, its backbone without BatchNorm."""
  return model.clone(backbone=functools.partial(model.backbone,
                                                batch_norm=False))


def fold_variables(variables, epsilon=resnet.BATCH_NORM_EPSILON):
  """`{'params', 'batch_stats'}` -> `{'params'}` of `fold_model`'s model.

  Numpy arrays in, numpy arrays out; jax arrays or tracers in (inside `jit`),
  the same out. The convolutions' kernels are scaled per output channel and
  given a bias; every other parameter is passed through.

  Raises:
    ValueError: a BatchNorm without a convolution to fold into.
  """
  params = flax.traverse_util.flatten_dict(variables['params'])
  stats = flax.traverse_util.flatten_dict(variables['batch_stats'])
  folded = {path: value for path, value in params.items()
            if path[:-1] + ('mean',) not in stats}
  for path in stats:
    if path[-1] != 'mean':
      continue
    norm = path[:-1]
    conv = norm[:-1] + (_CONV_OF_NORM.get(norm[-1], ''),)
    if conv + ('kernel',) not in params:
      raise ValueError(f'BatchNorm {"/".join(norm)} follows no convolution '
                       'that it can be folded into.')
    # Operators only, so that numpy and jax arrays both work.
    multiplier = (params[norm + ('scale',)] *
                  (stats[norm + ('var',)] + epsilon)**-0.5)
    folded[conv + ('kernel',)] = params[conv + ('kernel',)] * multiplier
    folded[conv + ('bias',)] = (params[norm + ('bias',)] -
                                stats[norm + ('mean',)] * multiplier)
  return {'params': flax.traverse_util.unflatten_dict(folded)}
