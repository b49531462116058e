"""The PyTorch names of a ViT's variables, in the layouts we convert.

Every layout is first renamed into the official VideoMAE / VideoMAE V2
fine-tuning names (OpenGVLab/VideoMAEv2 `models/modeling_finetune.py`:
`patch_embed.proj`, `blocks.N.{norm1,attn.qkv,attn.q_bias,attn.v_bias,
attn.proj,norm2,mlp.fc1,mlp.fc2,gamma_1,gamma_2}`, `fc_norm`, `head`), which
then map one to one onto the Flax paths of `models.vit`:

`VIDEOMAE`: those names (fine-tuned checkpoints; a `model`/`module` entry
  is unwrapped by `state_dict_files.unwrap_state_dict`).
`VIDEOMAE_PRETRAINED`: the `encoder.`-prefixed pre-training checkpoints; the
  decoder, mask token and the encoder's final norm (mean pooling uses a
  fresh `fc_norm` instead) are skipped.
`TRANSFORMERS`: `VideoMAEForVideoClassification` state dicts and files
  (`videomae.encoder.layer.N.attention.attention.{query,key,value}`, the q
  and v biases as `query.bias` / `value.bias`, or `q_bias` / `v_bias` in
  older files; the three projections are joined into one qkv; `fc_norm`,
  `classifier`).
`TRANSFORMERS_ENCODER`: the same names without `fc_norm` and a head:
  `VideoMAEModel` (no `videomae.` prefix) or `VideoMAEForPreTraining`, whose
  decoder, mask token and final `layernorm` are skipped.
`MMACTION`: mmaction2 1.x `VisionTransformer` (`mmaction/models/backbones/
  vit_mae.py`) and its head: `backbone.patch_embed.projection`,
  `backbone.blocks.N.{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,
  norm2}`, mmcv's FFN as `backbone.blocks.N.mlp.layers.0.0` (fc1) and
  `mlp.layers.1` (fc2), `backbone.fc_norm`, `cls_head.fc_cls`; its
  `pos_embed` is a buffer holding the fixed table.

Paths are Flax variable paths without the collection, such as
`('backbone', 'blocks_0', 'attn', 'qkv', 'kernel')`.
"""

import re

from absl import logging
import jax
import numpy as np

from maxmicro.models import vit

VIDEOMAE = 'videomae'
VIDEOMAE_PRETRAINED = 'videomae-pretrained'
TRANSFORMERS = 'transformers'
TRANSFORMERS_ENCODER = 'transformers-encoder'
MMACTION = 'mmaction-vit'

_LEAF_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
_BLOCK = re.compile(r'blocks_(\d+)$')
_HEADS = {'fc_cls': 'head'}  # MANet's extra heads have no torch name.
# (pattern, replacement) from transformers' names to the official ones.
_TRANSFORMERS_RENAMES = (
    (r'^videomae\.', ''),
    (r'^embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
    (r'^encoder\.layer\.(\d+)\.attention\.attention\.(q_bias|v_bias)$',
     r'blocks.\1.attn.\2'),
    (r'^encoder\.layer\.(\d+)\.attention\.attention\.query\.bias$',
     r'blocks.\1.attn.q_bias'),
    (r'^encoder\.layer\.(\d+)\.attention\.attention\.value\.bias$',
     r'blocks.\1.attn.v_bias'),
    (r'^encoder\.layer\.(\d+)\.attention\.output\.dense\.', r'blocks.\1.attn.proj.'),
    (r'^encoder\.layer\.(\d+)\.intermediate\.dense\.', r'blocks.\1.mlp.fc1.'),
    (r'^encoder\.layer\.(\d+)\.output\.dense\.', r'blocks.\1.mlp.fc2.'),
    (r'^encoder\.layer\.(\d+)\.layernorm_before\.', r'blocks.\1.norm1.'),
    (r'^encoder\.layer\.(\d+)\.layernorm_after\.', r'blocks.\1.norm2.'),
    (r'^classifier\.', 'head.'),
)
_MMACTION_RENAMES = (
    (r'^backbone\.', ''),
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^blocks\.(\d+)\.mlp\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^blocks\.(\d+)\.mlp\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^cls_head\.fc_cls\.', 'head.'),
)
_QKV = re.compile(
    r'^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$')


def detect_layout(keys):
  """The layout of a ViT state dict's keys, else ValueError."""
  keys = list(keys)
  if any(key.startswith(('videomae.', 'embeddings.patch_embeddings'))
         for key in keys):
    return TRANSFORMERS if 'fc_norm.weight' in keys else TRANSFORMERS_ENCODER
  if 'backbone.patch_embed.projection.weight' in keys:
    return MMACTION
  if 'encoder.patch_embed.proj.weight' in keys:
    return VIDEOMAE_PRETRAINED
  if 'patch_embed.proj.weight' in keys:
    return VIDEOMAE
  raise ValueError(
      'not a ViT state dict in a known layout (VideoMAE '
      "'patch_embed.proj.weight', its pre-training 'encoder.*', transformers "
      "'videomae.*' or mmaction2 'backbone.patch_embed.projection.*'); its "
      f'first keys are {", ".join(keys[:5]) or "none (it is empty)"}.')


def prepare(state_dict, layout, config):
  """`(state dict in the official names, {reason: [keys]} left out)`, its
  position table fitted to `config`'s model (`fit_position_table`)."""
  skipped = {}
  official = {}
  joined = {}
  for key, value in state_dict.items():
    reason = _skip_reason(key, layout)
    if reason:
      skipped.setdefault(reason, []).append(key)
      continue
    if layout in (TRANSFORMERS, TRANSFORMERS_ENCODER):
      match = _QKV.match(key.removeprefix('videomae.'))
      if match:
        joined.setdefault(int(match.group(1)), {})[match.group(2)] = value
        continue
      if key.endswith('attention.attention.key.bias'):
        raise ValueError(f'{key}: a key bias, which VideoMAE does not have.')
    official[_rename(key, layout)] = value
  for block, parts in joined.items():
    if set(parts) != {'query', 'key', 'value'}:
      raise ValueError(f'layer {block} lacks {{query,key,value}} - '
                       f'{set(parts)} of its attention projections.')
    official[f'blocks.{block}.attn.qkv.weight'] = np.concatenate(
        [parts['query'], parts['key'], parts['value']], axis=0)
  if 'pos_embed' in official:
    table = official.pop('pos_embed')
    fitted = fit_position_table(table, config)
    if fitted is None:
      skipped.setdefault('pos_embed (the fixed sine-cosine table, which the '
                         'model computes itself)', []).append('pos_embed')
    else:
      official['pos_embed'] = fitted
  return official, skipped


def token_grid(config):
  """(T', H', W') of the model's tokens."""
  model, size = config.model, config.data.image_size
  return (model.num_segments // model.tubelet_size,
          size // model.patch_size, size // model.patch_size)


def fit_position_table(table, config):
  """A checkpoint's `(1, L, C)` position table for `config`'s model.

  None for the fixed sine-cosine table when the model uses it too. A
  learnable table of another token grid is resized (separable cubic over
  time, height and width; VideoMAE's fine-tuning script resizes bicubically
  over space only), and the log says so.

  Raises:
    ValueError: a learned table for a model with the fixed one, or a table
      whose length is no grid of square frames.
  """
  table = np.asarray(table, np.float32).reshape((-1, table.shape[-1]))
  if not config.model.learnable_pos_embed:
    # float32 sines and cosines of the same angles, computed by torch or
    # numpy: equal to a few ulps of 1.
    if np.allclose(table, vit.sinusoid_table(*table.shape), atol=1e-5):
      return None
    raise ValueError(
        'pos_embed is a learned position table, but the config\'s model uses '
        'the fixed one: set --config.model.learnable_pos_embed=True.')
  grid = token_grid(config)
  if len(table) == np.prod(grid):
    return table[None]
  old = _grid_of(len(table), grid)
  resized = jax.image.resize(table.reshape(old + (-1,)),
                             grid + (table.shape[-1],), 'cubic')
  logging.warning('pos_embed: the checkpoint\'s %d positions taken as a %s '
                  '(T\', H\', W\') token grid and resized to the model\'s %s.',
                  len(table), old, grid)
  return np.asarray(resized).reshape((1, -1, table.shape[-1]))


# Token steps (T', half the frames) a checkpoint's table is tried with,
# after the model's own: 16 frames first (VideoMAE pre-trains and fine-tunes
# on them), then 8, 32, 4 and 2.
_CHECKPOINT_STEPS = (8, 4, 16, 2, 1)


def _grid_of(length, grid):
  """A checkpoint's (T', S, S) token grid: the length alone does not say,
  so the first of the model's T' and `_CHECKPOINT_STEPS` that leaves square
  frames."""
  for steps in (grid[0],) + _CHECKPOINT_STEPS:
    side = int(round((length / steps) ** 0.5))
    if steps * side * side == length:
      return (steps, side, side)
  raise ValueError(f'pos_embed has {length} positions, which is no grid of '
                   f'square frames; the model has {grid}.')


def _rename(key, layout):
  if layout == VIDEOMAE_PRETRAINED:
    return key.removeprefix('encoder.')
  renames = {TRANSFORMERS: _TRANSFORMERS_RENAMES,
             TRANSFORMERS_ENCODER: _TRANSFORMERS_RENAMES,
             MMACTION: _MMACTION_RENAMES}.get(layout, ())
  for pattern, replacement in renames:
    key = re.sub(pattern, replacement, key)
  return key


def _skip_reason(key, layout):
  if layout == VIDEOMAE_PRETRAINED and not key.startswith('encoder.'):
    return 'the pre-training decoder (decoder.*, encoder_to_decoder, mask_token)'
  if layout == VIDEOMAE_PRETRAINED and key.startswith('encoder.norm.'):
    return "the pre-training encoder's final norm (mean pooling uses fc_norm)"
  if layout in (TRANSFORMERS, TRANSFORMERS_ENCODER):
    key = key.removeprefix('videomae.')
    if key.startswith(('decoder.', 'encoder_to_decoder.', 'mask_token')):
      return ('the pre-training decoder (decoder.*, encoder_to_decoder, '
              'mask_token)')
    if key.startswith('layernorm.'):
      return "the encoder's final norm (mean pooling uses fc_norm)"
  return None


def skip_reason(key, layout, backbone_only=False):
  """Why a key (in the official names) carries nothing to convert, or None."""
  del layout
  if backbone_only and key.startswith('head.'):
    return 'head.* (init_from takes the backbone only)'
  return None


def torch_names(paths, layout, config):
  """`{path: official name or None}` for the Flax `paths` of the model.

  Pre-training checkpoints and bare encoders have no `fc_norm` (nor a
  head): None for them.
  """
  del config
  names = {path: torch_name(path) for path in paths}
  if layout in (VIDEOMAE_PRETRAINED, TRANSFORMERS_ENCODER):
    names = {path: None if path[:2] == ('backbone', 'fc_norm') else name
             for path, name in names.items()}
  return names


def torch_name(path):
  """The official name of the variable at `path`, or None if it has none."""
  *modules, leaf = path
  if modules[0] != 'backbone':
    head = _HEADS.get(modules[0])
    return None if head is None else f'{head}.{_LEAF_NAMES[leaf]}'
  if leaf == 'pos_embed':
    return 'pos_embed'
  if modules[1] == 'patch_embed':
    return f'patch_embed.proj.{_LEAF_NAMES[leaf]}'
  if modules[1] == 'fc_norm':
    return f'fc_norm.{_LEAF_NAMES[leaf]}'
  block = _BLOCK.match(modules[1])
  if not block:
    raise ValueError(f'unexpected ViT module {"/".join(path)}.')
  prefix = f'blocks.{block.group(1)}'
  if leaf in ('q_bias', 'v_bias'):
    return f'{prefix}.attn.{leaf}'
  if leaf in ('gamma_1', 'gamma_2'):
    return f'{prefix}.{leaf}'
  return f'{prefix}.{".".join(modules[2:])}.{_LEAF_NAMES[leaf]}'


def to_flax(array, leaf):
  """Conv3d OITHW -> THWIO, Linear (out, in) -> (in, out)."""
  if leaf == 'kernel' and array.ndim == 5:
    return np.transpose(array, (2, 3, 4, 1, 0))
  if leaf == 'kernel' and array.ndim == 2:
    return array.T
  return array


def torch_shape(flax_shape, leaf):
  """The PyTorch shape of a Flax variable of shape `flax_shape`."""
  if leaf == 'kernel' and len(flax_shape) == 5:
    return tuple(flax_shape[i] for i in (4, 3, 0, 1, 2))
  if leaf == 'kernel' and len(flax_shape) == 2:
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)
