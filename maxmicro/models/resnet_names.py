"""The PyTorch names of maxmicro's variables, in the two layouts we convert.

`MMACTION`: official MANet, TSM and TSN checkpoints, an mmaction2 ResNet built
from mmcv ConvModules (`backbone.conv1.conv.weight`, `backbone.conv1.bn.*`),
the TSM wrapper around each block's conv1 (`layer1.0.conv1.conv.net.weight`),
MANet's SE gate inside that wrapper (`conv1.conv.fcce.{0,2}.weight`) and the
heads under `cls_head.`.

`TORCHVISION`: a `torchvision.models.resnet` state dict (`conv1.weight`,
`bn1.*`, `layer1.0.conv1.weight`, `layer1.0.downsample.{0,1}.*`, `fc.*`). It
names only the trunk: SE gates and heads have no torchvision name.

Paths are Flax variable paths without the collection, such as
`('backbone', 'layer1_0', 'bn1', 'scale')`.
"""

import re

import numpy as np

MMACTION = 'mmaction'
TORCHVISION = 'torchvision'

# Flax leaf name -> PyTorch parameter or buffer name.
_LEAF_NAMES = {
    'kernel': 'weight',
    'scale': 'weight',
    'bias': 'bias',
    'mean': 'running_mean',
    'var': 'running_var',
}
_BLOCK = re.compile(r'layer(\d+)_(\d+)$')
_BLOCK_NORM = re.compile(r'bn(\d)$')
_SE_LINEARS = {'fc1': 'fcce.0', 'fc2': 'fcce.2'}
_TORCHVISION_DOWNSAMPLE = {'downsample_conv': 'downsample.0',
                           'downsample_bn': 'downsample.1'}
_MMACTION_DOWNSAMPLE = {'downsample_conv': 'downsample.conv',
                        'downsample_bn': 'downsample.bn'}


def detect_layout(keys):
  """`MMACTION` or `TORCHVISION` from a state dict's keys, else ValueError."""
  keys = list(keys)
  if any(key.startswith(('backbone.', 'cls_head.')) for key in keys):
    return MMACTION
  if 'conv1.weight' in keys:
    return TORCHVISION
  raise ValueError(
      'not a ResNet state dict in a known layout (neither mmaction2 '
      "'backbone.*' nor torchvision 'conv1.weight'); its first keys are "
      f'{", ".join(keys[:5]) or "none (it is empty)"}.')


def skip_reason(key, layout, backbone_only=False):
  """Why a key of a state dict carries nothing to convert, or None.

  With `backbone_only` (a run's `init_from`), heads are skipped too.
  """
  if backbone_only and layout == MMACTION and key.startswith('cls_head.'):
    return 'cls_head.* (init_from takes the backbone only)'
  if key.endswith('num_batches_tracked'):
    return 'num_batches_tracked (BatchNorm counter, unused)'
  if layout == MMACTION and '.action_p2_' in key:
    return 'action_p2_* (built but never called by the official forward)'
  if layout == TORCHVISION and key.split('.')[0] == 'fc':
    return 'fc.* (the ImageNet classifier)'
  return None


def prepare(state_dict, layout, config):
  """The state dict as it is: ResNet names map one to one."""
  del layout, config
  return state_dict, {}


def torch_names(paths, layout, config):
  """`{path: PyTorch name or None}` for the Flax `paths` of the model."""
  conv1_wrapped = config.model.use_se or config.model.use_shift
  return {path: torch_name(path, layout, conv1_wrapped) for path in paths}


def torch_name(path, layout, conv1_wrapped):
  """The PyTorch name of the variable at `path`, or None if `layout` lacks it.

  Args:
    path: the Flax path without its collection, a tuple of str.
    layout: `MMACTION` or `TORCHVISION`.
    conv1_wrapped: whether (mmaction2 layout) each block's conv1 sits in the
      TSM wrapper, so its weight is `conv1.conv.net.weight`; true for the
      TSM and MANet models, false for TSN.
  """
  *modules, leaf = path
  if layout == MMACTION:
    module = _mmaction_module(modules, conv1_wrapped)
  elif layout == TORCHVISION:
    module = _torchvision_module(modules)
  else:
    raise ValueError(f'unknown layout {layout!r}.')
  return None if module is None else f'{module}.{_LEAF_NAMES[leaf]}'


def _mmaction_module(modules, conv1_wrapped):
  if modules[0] != 'backbone':
    return 'cls_head.' + '.'.join(modules)
  if modules[1:] == ['conv1']:
    return 'backbone.conv1.conv'
  if modules[1:] == ['bn1']:
    return 'backbone.conv1.bn'
  block = _block_prefix(modules[1])
  layer = modules[2]
  if layer == 'mix':  # ('mix', 'se', 'fc1'): the SE gate in the TSM wrapper.
    return f'backbone.{block}.conv1.conv.{_SE_LINEARS[modules[4]]}'
  if layer in _MMACTION_DOWNSAMPLE:
    return f'backbone.{block}.{_MMACTION_DOWNSAMPLE[layer]}'
  norm = _BLOCK_NORM.match(layer)
  if norm:
    return f'backbone.{block}.conv{norm.group(1)}.bn'
  wrapper = '.net' if layer == 'conv1' and conv1_wrapped else ''
  return f'backbone.{block}.{layer}.conv{wrapper}'


def _torchvision_module(modules):
  if modules[0] != 'backbone':
    return None  # Heads: torchvision has only its ImageNet `fc`.
  if len(modules) == 2:
    return modules[1]  # The stem's conv1 and bn1.
  block = _block_prefix(modules[1])
  layer = modules[2]
  if layer == 'mix':
    return None  # The SE gate: no torchvision counterpart.
  return f'{block}.{_TORCHVISION_DOWNSAMPLE.get(layer, layer)}'


def _block_prefix(flax_block):
  """'layer2_3' -> 'layer2.3'."""
  match = _BLOCK.match(flax_block)
  if not match:
    raise ValueError(f'unexpected backbone module {flax_block!r}.')
  return f'layer{match.group(1)}.{match.group(2)}'


def to_flax(array, leaf):
  """A PyTorch tensor in Flax's layout: conv OIHW -> HWIO, Linear transposed."""
  if leaf == 'kernel' and array.ndim == 4:
    return np.transpose(array, (2, 3, 1, 0))
  if leaf == 'kernel' and array.ndim == 2:
    return array.T
  return array


def torch_shape(flax_shape, leaf):
  """The PyTorch shape of a Flax variable of shape `flax_shape`."""
  if leaf == 'kernel' and len(flax_shape) == 4:
    return tuple(flax_shape[i] for i in (3, 2, 0, 1))
  if leaf == 'kernel' and len(flax_shape) == 2:
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)
