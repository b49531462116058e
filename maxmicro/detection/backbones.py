"""The recognition trunk that computes detection features, and its identity.

`config.detection` names one of two sources of weights:
- `backbone_workdir`: a maxmicro recognition workdir (trained on MA-52, or
  converted official weights); its saved config gives the model.
- `backbone_init_from`: a torchvision ResNet ImageNet state dict, loaded into
  the model of `config.detection.backbone_config` as recognition's
  `config.init_from` loads it (`convert.load_backbone_init`). Variables the
  file does not name (MANet's SE gates) keep a fresh initialisation from
  `FRESH_SEED`, so the same file always gives the same features.

`Backbone.identity` is what features depend on; the features directory and a
detector's workdir record it, and both are checked against it.
"""

import dataclasses
import functools
import hashlib
import os

import jax
import jax.numpy as jnp

from maxmicro import checkpoint
from maxmicro import convert
from maxmicro import evaluate
from maxmicro import models
from maxmicro.data import detection_pipeline

# The seed of the variables an ImageNet state dict does not name.
FRESH_SEED = 0


@dataclasses.dataclass
class Backbone:
  """A recognition model's trunk, ready to compute features."""
  # A recognition config (`model` and `data` sections): the one saved with
  # the checkpoint, or `config.detection.backbone_config`.
  config: object
  workdir: str = None  # The recognition workdir, or None.
  step: int = None  # Its checkpoint step, or None.
  variables: object = None  # The trunk's {'params', 'batch_stats'}.
  init_from: str = None  # The ImageNet state dict file, or None.
  init_sha256: str = None  # Its content's hash.

  @property
  def num_segments(self):
    return self.config.model.num_segments

  def source(self):
    """Where the weights come from."""
    if self.init_from:
      return {'backbone_init_from': self.init_from,
              'backbone_init_sha256': self.init_sha256}
    return {'backbone_workdir': self.workdir,
            'backbone_step': int(self.step)}

  def identity(self, config):
    """What features made by this backbone for `config` depend on."""
    return {
        'format': detection_pipeline.FORMAT_VERSION,
        **self.source(),
        'backbone_model': checkpoint.config_to_json(self.config)['model'],
        'image_size': self.config.data.image_size,
        'resize_short_side': self.config.data.resize_short_side,
        'dataset': f'mma52/{config.data.builder_config}',
        'frame_stride': config.detection.frame_stride,
    }


def _single_device():
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def open_workdir(config, with_variables):
  """The backbone of `config.detection.backbone_workdir`."""
  detection = config.detection
  workdir = detection.backbone_workdir
  if not workdir or not os.path.isdir(workdir):
    raise checkpoint.CheckpointError(
        f'config.detection.backbone_workdir={workdir!r} is not a directory. '
        'The detector reads features of a maxmicro recognition backbone: '
        'train one first (for the demo: make demo, or python run.py '
        '--config=configs/demo.py --workdir=workdirs/demo) or convert '
        'official weights (python -m maxmicro.convert ...), and point '
        'config.detection.backbone_workdir at it.')
  manager, step, saved = checkpoint.open_for_reading(
      workdir, detection.backbone_checkpoint)
  try:
    if saved.data.dataset != 'ma52':
      raise ValueError(
          f'config.detection.backbone_workdir={workdir!r} holds a '
          f'{saved.data.dataset} model, not a recognition backbone.')
    backbone = Backbone(saved, workdir=os.path.abspath(workdir),
                        step=int(step))
    if with_variables:
      variables = evaluate.restore_variables(manager, step, saved,
                                             _single_device())
      backbone.variables = trunk_variables(variables)
  finally:
    manager.close()
  return backbone


def file_sha256(path):
  """The hex SHA-256 of a file's bytes, read in chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as file:
    for chunk in iter(lambda: file.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def open_init_from(config, with_variables):
  """`config.detection.backbone_config`'s model with the ImageNet weights of
  `config.detection.backbone_init_from`."""
  path = config.detection.backbone_init_from
  if not os.path.isfile(path):
    raise ValueError(
        f'config.detection.backbone_init_from={path!r} is not a file; give '
        'a torchvision ResNet ImageNet state dict (.pth or .safetensors) '
        'that fits config.detection.backbone_config.model.')
  recognition = config.detection.backbone_config
  backbone = Backbone(recognition, init_from=os.path.abspath(path),
                      init_sha256=file_sha256(path))
  if with_variables:
    model = models.build_model(recognition)
    init = jax.jit(functools.partial(model.init, train=False))
    fresh = init(jax.random.key(FRESH_SEED),
                 jnp.zeros(models.input_shape(recognition), jnp.float32))
    variables = convert.load_backbone_init(
        path, jax.device_get(fresh), recognition,
        what='config.detection.backbone_init_from')
    backbone.variables = jax.device_put(trunk_variables(variables),
                                        _single_device())
  return backbone


def trunk_variables(variables):
  """The `backbone` part of a recognition model's variables."""
  # A collection without the backbone (a ViT's empty batch_stats) is empty.
  return {key: value.get('backbone', {}) for key, value in variables.items()}
