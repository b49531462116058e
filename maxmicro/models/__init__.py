"""Model zoo: `build_model(config)` is where a config becomes a module.

Config values are checked once, when the command line is parsed
(`maxmicro.config_checks`, from the tables here and in `resnet`).
"""

import functools

import jax
import jax.numpy as jnp

from maxmicro.models import resnet
from maxmicro.models import video

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name):
  """'auto' is float32 on CPU and bfloat16 on GPU/TPU; parameters stay f32."""
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return DTYPES[name]


def build_model(config):
  """The `VideoClassifier` of `config.model` (TSN, TSM or MANet).

  `use_se` and `use_shift` switch MANet's SE gate and temporal shift: neither
  is TSN, the shift alone TSM, both MANet.
  """
  model_config = config.model
  dtype = compute_dtype(model_config.dtype)
  stage_sizes = tuple(model_config.stage_sizes or
                      resnet.STAGE_SIZES[model_config.depth])
  backbone = functools.partial(
      resnet.ResNet,
      stage_sizes=stage_sizes,
      block_cls=resnet.BLOCK_CLS[model_config.depth],
      width=model_config.width,
      use_se=model_config.use_se,
      use_shift=model_config.use_shift,
      num_segments=model_config.num_segments,
      fold_div=model_config.fold_div,
      se_reduction=model_config.se_reduction,
      dtype=dtype)
  return video.VideoClassifier(
      backbone=backbone,
      num_segments=model_config.num_segments,
      num_classes=model_config.num_classes,
      embedding_dim=model_config.embedding_dim,
      dropout_rate=model_config.dropout_rate,
      body_head=model_config.body_head,
      dtype=dtype)


def input_shape(config, batch_size=1):
  """`(N, T, S, S, 3)`, the clips `build_model(config)` takes."""
  size = config.data.image_size
  return (batch_size, config.model.num_segments, size, size, 3)


def abstract_variables(config):
  """`{'params', 'batch_stats'}` of `build_model(config)` as shapes only."""
  model = build_model(config)
  video = jax.ShapeDtypeStruct(input_shape(config), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.key(0), video)
  return {'params': shapes['params'], 'batch_stats': shapes['batch_stats']}
