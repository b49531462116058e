"""Model zoo: `build_model(config)` is where a config becomes a module.

Config values are checked once, when the command line is parsed
(`maxmicro.config_checks`, from the tables here: each family's `choices`
and `check_config`).
"""

import dataclasses
import functools
import types
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from maxmicro.models import resnet
from maxmicro.models import resnet3d
from maxmicro.models import resnet3d_names
from maxmicro.models import resnet_names
from maxmicro.models import swin
from maxmicro.models import swin_names
from maxmicro.models import video
from maxmicro.models import vit
from maxmicro.models import vit_names

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name):
  """'auto' is float32 on CPU and bfloat16 on GPU/TPU; parameters stay f32."""
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return DTYPES[name]


@dataclasses.dataclass(frozen=True)
class Family:
  """A backbone family: its module from a config, how it sees a clip, and
  how its PyTorch checkpoints name its variables.

  A family is its own files (`models/<family>.py` with a `from_config`, and
  `models/<family>_names.py` for `maxmicro.convert`) and one line below.

  Attributes:
    backbone: `(config.model, dtype) -> module class` (a partial).
    per_frame: the backbone scores frames `(N*T, H, W, C)`; else whole clips.
    head_init: kernel initialiser of the classifier's heads.
    names: the module that recognises the family's state-dict layouts and
      names its variables in them (`detect_layout`, `prepare`,
      `torch_names`, `skip_reason`, `to_flax`, `torch_shape`).
    check_config: `config -> None`, raising ValueError that names the
      field, for what the family's model needs beyond `choices`.
    choices: `{'model.<field>': allowed values}` of its enumerated fields.
    frames_per_step: `config.model -> frames` one step of a clip
      backbone's output covers (its temporal stride); 1 per frame.
    layer_decay: its blocks stack as a ViT's (`optim.layer_decay` applies).
  """
  backbone: Callable
  per_frame: bool
  head_init: Callable
  names: types.ModuleType
  check_config: Callable
  choices: dict = dataclasses.field(default_factory=dict)
  frames_per_step: Callable = lambda model_config: 1
  layer_decay: bool = False


def _tubelet(model_config):
  return model_config.tubelet_size


# `config.model.family` -> its Family; one line per family.
FAMILIES = {
    'resnet': Family(resnet.from_config, True,
                     nn.initializers.normal(stddev=0.001), resnet_names,
                     resnet.check_config,
                     {'model.depth': tuple(resnet.STAGE_SIZES)}),
    # VideoMAE's head: trunc_normal(0.02) scaled by init_scale 0.001.
    'vit': Family(vit.from_config, False,
                  nn.initializers.truncated_normal(stddev=0.02 * 0.001),
                  vit_names, vit.check_config, frames_per_step=_tubelet,
                  layer_decay=True),
    # mmaction2's I3DHead: normal(0.01).
    'swin': Family(swin.from_config, False,
                   nn.initializers.normal(stddev=0.01), swin_names,
                   swin.check_config, frames_per_step=_tubelet),
    'resnet3d': Family(resnet3d.from_config, False,
                       nn.initializers.normal(stddev=0.01), resnet3d_names,
                       resnet3d.check_config,
                       {'model.inflate_style': resnet3d.INFLATE_STYLES},
                       frames_per_step=resnet3d.frames_per_step),
}


def build_model(config):
  """The `VideoClassifier` of `config.model` (its `family`'s backbone)."""
  model_config = config.model
  dtype = compute_dtype(model_config.dtype)
  family = FAMILIES[model_config.family]
  return video.VideoClassifier(
      backbone=family.backbone(model_config, dtype),
      num_segments=model_config.num_segments,
      num_classes=model_config.num_classes,
      embedding_dim=model_config.embedding_dim,
      dropout_rate=model_config.dropout_rate,
      body_head=model_config.body_head,
      embedding_head=model_config.embedding_head,
      per_frame=family.per_frame,
      head_init=family.head_init,
      dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Trunk:
  """A classifier's backbone alone, for per-frame detection features.

  Attributes:
    module: the backbone's module class (`build_model(config).backbone`); its
      variables are the classifier's under `backbone`.
    per_frame: it scores frames; else whole clips.
    frames_per_step: frames one clip-backbone feature covers (a ViT's
      tubelet); 1 for per-frame backbones.
  """
  module: Callable
  per_frame: bool
  frames_per_step: int = 1

  def frame_features(self, backbone, video, train=False):
    """`(N, T, C)` features of each frame of `video (N, T, H, W, 3)`.

    `backbone` is a bound instance of `module` (a submodule inside a
    parent's `compact`, or the module under `nn.apply`). A clip backbone's
    step features are repeated over the frames each one covers.
    """
    if self.per_frame:
      frames = video.reshape((-1,) + video.shape[2:])
      return backbone(frames, train=train).reshape(video.shape[:2] + (-1,))
    steps = backbone(video, train=train, step_features=True)
    return jnp.repeat(steps, self.frames_per_step, axis=1)

  def apply(self, variables, video, train=False):
    """`frame_features` of the unbound module with its `variables`."""
    return nn.apply(lambda backbone: self.frame_features(
        backbone, video, train=train), self.module())(variables)


def build_trunk(config):
  """The `Trunk` of `build_model(config)`."""
  family = FAMILIES[config.model.family]
  return Trunk(module=build_model(config).backbone,
               per_frame=family.per_frame,
               frames_per_step=family.frames_per_step(config.model))


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
  # A ViT has no BatchNorm; the collection is kept so every family's
  # variables have the same two.
  return {'params': shapes['params'],
          'batch_stats': shapes.get('batch_stats', {})}
