"""The PyTorch names of a 3D ResNet's variables, in the layouts we convert.

`MMACTION`: mmaction2 0.x and 1.x `ResNet3d` / `ResNet3dSlowOnly` with its
  `I3DHead` (the official I3D-R50 MA-52 config): mmcv ConvModules
  `backbone.conv1.{conv,bn}`, `backbone.layerI.J.{conv1,conv2,conv3,
  downsample}.{conv,bn}`, `cls_head.fc_cls`. BatchNorm statistics are
  `running_mean` / `running_var`.
`IMAGENET_2D`: a torchvision ResNet-50's ImageNet state dict (`conv1`,
  `bn1`, `layerI.J.{convK,bnK}`, `layerI.J.downsample.{0,1}`, `fc`), what
  mmaction2's `pretrained2d` loads, inflated as its `_inflate_conv_params`
  does: each 2D kernel repeated over the 3D kernel's frames and divided by
  their count, so that a still video gives the 2D network's features. Its
  ImageNet `fc` is skipped.

Paths are Flax variable paths without the collection, such as
`('backbone', 'layer1_0', 'conv1', 'bn', 'mean')`.
"""

import re

import numpy as np

from maxmicro.models import resnet3d
from maxmicro.models import vit_names

MMACTION = 'mmaction-resnet3d'
IMAGENET_2D = 'imagenet-resnet2d'

_LEAF_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
               'mean': 'running_mean', 'var': 'running_var'}
_BLOCK = re.compile(r'layer(\d+)_(\d+)$')
_HEADS = {'fc_cls': 'cls_head.fc_cls'}  # MANet's extra heads have no name.

# Flax and PyTorch hold 3D kernels and Linear weights the same way as a ViT.
to_flax = vit_names.to_flax
torch_shape = vit_names.torch_shape


def detect_layout(keys):
  """The layout of a 3D ResNet state dict's keys, else ValueError."""
  keys = list(keys)
  if 'backbone.conv1.conv.weight' in keys:
    return MMACTION
  if 'conv1.weight' in keys and 'bn1.weight' in keys:
    return IMAGENET_2D
  raise ValueError(
      'not a 3D ResNet state dict in a known layout (mmaction2 '
      "'backbone.conv1.conv.weight' or a torchvision ResNet's "
      "'conv1.weight'); its first keys are "
      f'{", ".join(keys[:5]) or "none (it is empty)"}.')


def prepare(state_dict, layout, config):
  """`(state dict in mmaction2's names, {reason: [keys]} left out)`; a 2D
  file renamed and inflated to `config`'s model."""
  if layout == MMACTION:
    return state_dict, {}
  frames = _temporal_kernels(config.model)
  skipped, renamed = {}, {}
  for key, value in state_dict.items():
    if key.startswith('fc.'):
      skipped.setdefault('fc.* (the ImageNet classifier)', []).append(key)
      continue
    name = 'backbone.' + _mmaction_name(key)
    value = np.asarray(value)
    if value.ndim == 4:
      kernel_t = frames.get(name.removesuffix('.conv.weight'), 1)
      value = np.repeat(value[:, :, None], kernel_t, axis=2) / kernel_t
    renamed[name] = value
  return renamed, skipped


def _mmaction_name(key):
  """A torchvision ResNet key in mmaction2's ConvModule names."""
  key = re.sub(r'^bn1\.', 'conv1.bn.', key)
  key = re.sub(r'^conv1\.weight$', 'conv1.conv.weight', key)
  key = re.sub(r'downsample\.0\.', 'downsample.conv.', key)
  key = re.sub(r'downsample\.1\.', 'downsample.bn.', key)
  key = re.sub(r'\.bn(\d)\.', r'.conv\1.bn.', key)
  return re.sub(r'\.conv(\d)\.weight$', r'.conv\1.conv.weight', key)


def _temporal_kernels(model_config):
  """`{mmaction2 ConvModule name: temporal kernel size}` where it is not 1."""
  kernels = {'backbone.conv1': model_config.conv1_kernel[0]}
  stage_blocks = resnet3d.stage_blocks_of(model_config)
  inflation = resnet3d.per_block_inflation(model_config.inflate, stage_blocks)
  inflated = 'conv1' if model_config.inflate_style == '3x1x1' else 'conv2'
  for stage, blocks in enumerate(inflation):
    for index, inflate in enumerate(blocks):
      if inflate:
        kernels[f'backbone.layer{stage + 1}.{index}.{inflated}'] = 3
  return kernels


def skip_reason(key, layout, backbone_only=False):
  """Why a key (in mmaction2's names) carries nothing to convert, or None."""
  del layout
  if backbone_only and key.startswith('cls_head.'):
    return 'cls_head.* (init_from takes the backbone only)'
  if key.endswith('num_batches_tracked'):
    return 'num_batches_tracked (BatchNorm counter, unused)'
  return None


def torch_names(paths, layout, config):
  """`{path: mmaction2 name}` for the Flax `paths` of the model."""
  del layout, config
  return {path: torch_name(path) for path in paths}


def torch_name(path):
  """The mmaction2 name of the variable at `path`, or None."""
  *modules, leaf = path
  leaf = _LEAF_NAMES[leaf]
  if modules[0] != 'backbone':
    head = _HEADS.get(modules[0])
    return None if head is None else f'{head}.{leaf}'
  module, rest = modules[1], modules[2:]
  block = _BLOCK.match(module)
  if block:
    module = f'layer{block.group(1)}.{block.group(2)}'
  elif module != 'conv1':
    raise ValueError(f'unexpected 3D ResNet module {"/".join(path)}.')
  return '.'.join(['backbone', module, *rest, leaf])
