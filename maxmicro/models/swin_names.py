"""The PyTorch names of a Video Swin's variables, in the layouts we convert.

Every layout is first renamed into mmaction2 1.x's names
(`mmaction/models/backbones/swin.py` under `backbone.`, its `I3DHead` as
`cls_head.fc_cls`), which map one to one onto the Flax paths of
`models.swin`:

`MMACTION`: mmaction2 1.x recognisers (the MAC 2024 track-1 baseline's
  MA-52 checkpoints): `backbone.patch_embed.{proj,norm}`,
  `backbone.layers.I.blocks.J.{norm1,attn.qkv,attn.proj,
  attn.relative_position_bias_table,norm2,mlp.fc1,mlp.fc2}`,
  `backbone.layers.I.downsample.{norm,reduction}`, the last stage's norm
  `backbone.norm3`, `cls_head.fc_cls`.
`MMACTION0`: mmaction2 0.x and the Video Swin release
  (SwinTransformer/Video-Swin-Transformer): the same, the final norm named
  `backbone.norm`.
`TORCHVISION`: `torchvision.models.video.swin3d_t/s/b`: `patch_embed.*`,
  stage I's blocks as `features.2I.J.*` (the MLP's Linears `mlp.0`,
  `mlp.3`), its merging as `features.2I+1.*`, `norm`, `head`.
`IMAGENET_2D`: a 2D Swin's ImageNet checkpoint (microsoft/Swin-Transformer,
  what the MAC baseline's configs start from), inflated as mmaction2's
  `SwinTransformer3D.inflate_weights` does: the patch embedding's kernel
  repeated over the tubelet's frames and divided by their count, each
  relative position table repeated over the 2Wd-1 temporal offsets, `norm`
  taken as the last stage's. Its ImageNet head is another class count.

Every layout's `relative_position_index` (and a 2D file's `attn_mask`) is a
buffer the model computes itself; it is skipped. Paths are Flax variable
paths without the collection, such as
`('backbone', 'layers_0_blocks_1', 'attn', 'qkv', 'kernel')`.
"""

import re

import numpy as np

from maxmicro.models import vit_names

MMACTION = 'mmaction-swin'
MMACTION0 = 'mmaction0-swin'
TORCHVISION = 'torchvision-swin3d'
IMAGENET_2D = 'imagenet-swin2d'

_LEAF_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
               'relative_position_bias_table': 'relative_position_bias_table'}
_BLOCK = re.compile(r'layers_(\d+)_blocks_(\d+)$')
_DOWNSAMPLE = re.compile(r'downsample_(\d+)$')
_HEADS = {'fc_cls': 'cls_head.fc_cls'}  # MANet's extra heads have no name.
_BUFFERS = ('relative_position_index', 'attn_mask')

# Flax and PyTorch hold kernels the same way in every layout.
to_flax = vit_names.to_flax
torch_shape = vit_names.torch_shape


def detect_layout(keys):
  """The layout of a Video Swin state dict's keys, else ValueError."""
  keys = list(keys)
  if 'features.0.0.norm1.weight' in keys:
    return TORCHVISION
  if 'backbone.patch_embed.proj.weight' in keys:
    return MMACTION0 if 'backbone.norm.weight' in keys else MMACTION
  if 'layers.0.blocks.0.norm1.weight' in keys:
    return IMAGENET_2D
  raise ValueError(
      'not a Video Swin state dict in a known layout (mmaction2 '
      "'backbone.layers.0.blocks.0.*', torchvision 'features.0.0.*' or a 2D "
      "Swin's 'layers.0.blocks.0.*'); its first keys are "
      f'{", ".join(keys[:5]) or "none (it is empty)"}.')


def prepare(state_dict, layout, config):
  """`(state dict in mmaction2 1.x names, {reason: [keys]} left out)`."""
  last_norm = f'backbone.norm{len(config.model.depths) - 1}.'
  skipped, renamed = {}, {}
  for key, value in state_dict.items():
    if key.rsplit('.', 1)[-1] in _BUFFERS:
      skipped.setdefault(
          'relative_position_index / attn_mask (buffers the model computes '
          'itself)', []).append(key)
      continue
    name = _rename(key, layout, last_norm)
    if layout == IMAGENET_2D:
      value = _inflate(name, np.asarray(value), config)
    renamed[name] = value
  return renamed, skipped


def _rename(key, layout, last_norm):
  """`key` of `layout` in mmaction2 1.x's names."""
  if layout == MMACTION:
    return key
  if layout == MMACTION0:
    return re.sub(r'^backbone\.norm\.', last_norm, key)
  if layout == TORCHVISION:
    key = _torchvision_stage_name(key)
  key = re.sub(r'^head\.', 'cls_head.fc_cls.', key)
  key = re.sub(r'^norm\.', last_norm, key)
  return key if key.startswith(('cls_head.', 'backbone.')) else 'backbone.' + key


def _torchvision_stage_name(key):
  """torchvision's `features.K.*` as a 2D Swin's `layers.I.*`: stage I's
  blocks are `features.2I`, its patch merging `features.2I+1`."""
  match = re.match(r'features\.(\d+)\.(.*)$', key)
  if not match:
    return key
  index, rest = int(match.group(1)), match.group(2)
  if index % 2:
    return f'layers.{index // 2}.downsample.{rest}'
  rest = re.sub(r'^(\d+)\.', r'blocks.\1.', rest)
  rest = rest.replace('mlp.0.', 'mlp.fc1.').replace('mlp.3.', 'mlp.fc2.')
  return f'layers.{index // 2}.{rest}'


def _inflate(name, value, config):
  """A 2D Swin tensor made 3D as mmaction2's `inflate_weights` does."""
  model = config.model
  if name == 'backbone.patch_embed.proj.weight' and value.ndim == 4:
    frames = model.tubelet_size
    return np.repeat(value[:, :, None], frames, axis=2) / frames
  if name.endswith('relative_position_bias_table'):
    window = model.window_size
    plane = (2 * window[1] - 1) * (2 * window[2] - 1)
    if value.shape[0] != plane:
      raise ValueError(
          f'{name}: {value.shape[0]} relative positions, a 2D window other '
          f'than the model\'s {window[1]}x{window[2]} ({plane}); only equal '
          'windows are inflated.')
    return np.tile(value, (2 * window[0] - 1, 1))
  return value


def skip_reason(key, layout, backbone_only=False):
  """Why a key (in mmaction2 1.x names) carries nothing to convert, or None."""
  del layout
  if backbone_only and key.startswith('cls_head.'):
    return 'cls_head.* (init_from takes the backbone only)'
  return None


def torch_names(paths, layout, config):
  """`{path: mmaction2 1.x name}` for the Flax `paths` of the model."""
  del layout
  last_norm = f'backbone.norm{len(config.model.depths) - 1}'
  return {path: torch_name(path, last_norm) for path in paths}


def torch_name(path, last_norm):
  """The mmaction2 1.x name of the variable at `path`, or None."""
  *modules, leaf = path
  leaf = _LEAF_NAMES[leaf]
  if modules[0] != 'backbone':
    head = _HEADS.get(modules[0])
    return None if head is None else f'{head}.{leaf}'
  module, rest = modules[1], modules[2:]
  if module in ('patch_embed_proj', 'patch_embed_norm'):
    return f'backbone.patch_embed.{module.rsplit("_", 1)[1]}.{leaf}'
  if module == 'norm':
    return f'{last_norm}.{leaf}'
  block = _BLOCK.match(module)
  if block:
    stage, index = block.groups()
    return '.'.join([f'backbone.layers.{stage}.blocks.{index}', *rest, leaf])
  downsample = _DOWNSAMPLE.match(module)
  if downsample:
    return '.'.join([f'backbone.layers.{downsample.group(1)}.downsample',
                     *rest, leaf])
  raise ValueError(f'unexpected Video Swin module {"/".join(path)}.')
