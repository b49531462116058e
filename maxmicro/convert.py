r"""PyTorch weights to maxmicro variables, for every backbone family.

Each family names its variables in its own module (`models.FAMILIES`,
`names`), which recognises a state dict's layout by its keys
(`detect_layout`):
- ResNets (`models/resnet_names.py`): official MANet / TSM / TSN
  checkpoints (mmcv checkpoints of the mmaction2 fork, or their bare state
  dicts), and torchvision ImageNet state dicts (a backbone only).
- ViTs (`models/vit_names.py`): official VideoMAE / VideoMAE V2
  checkpoints, fine-tuned (`blocks.N.attn.qkv`, `fc_norm`, `head`) or
  pre-trained (`encoder.*`, a backbone only); transformers'
  `VideoMAEForVideoClassification` and `VideoMAEModel`; mmaction2 1.x
  `VisionTransformer` (`backbone.*`, `cls_head.fc_cls`). A learned position
  table is resized to the model's frames and image size.
- Video Swin (`models/swin_names.py`): mmaction2 1.x and 0.x
  `SwinTransformer3D` recognisers (the MAC 2024 track-1 baseline's MA-52
  checkpoints), torchvision's `swin3d_*`, and a 2D ImageNet Swin inflated as
  mmaction2's `pretrained2d` does (a backbone only).
- 3D ResNets (`models/resnet3d_names.py`): mmaction2 `ResNet3d` /
  `ResNet3dSlowOnly` recognisers, and torchvision's ImageNet ResNet-50
  inflated as `pretrained2d` (a backbone only).
A head of another class count starts fresh, in every family.
This module is the same for all: it reads the files (`state_dict_files`:
`.pth` without unpickling code, `.safetensors`), checks the keys, and writes
workdirs. Whole models convert with `torch_to_variables`; a backbone alone
initialises a run, for `config.init_from` and the detector's
`backbone_init_from` alike (`load_backbone_init`).

Convert an official checkpoint into a workdir that `run.py` evaluates:

  python -m maxmicro.convert --torch_checkpoint=manet_epoch_40.pth \
      --config=configs/manet.py:paper --out=workdirs/manet_official
  python run.py --config=configs/manet.py:paper \
      --workdir=workdirs/manet_official --mode=eval

or a fine-tuned VideoMAE V2 ViT-B (official, transformers or mmaction2
names; a Kinetics head of 400 or 710 classes is replaced by a fresh 52-class
one, to fine-tune with `--mode=train`):

  python -m maxmicro.convert --torch_checkpoint=vit_b_k710_dl_from_giant.pth \
      --config=configs/videomae.py:base --out=workdirs/vit_b_k710
"""

import dataclasses
import functools
import os
import sys

from absl import logging
from etils import epath
import flax
import jax
import numpy as np

from maxmicro import checkpoint
from maxmicro import models
from maxmicro import state_dict_files

# Problems listed per kind in an error message; the rest are counted.
_MAX_LISTED = 40


# Raised for files (`state_dict_files`) and for names and shapes alike.
ConversionError = state_dict_files.ConversionError


@dataclasses.dataclass
class Conversion:
  """Converted variables and what was left out on the way.

  Attributes:
    variables: Flax path (with its collection) -> float32 numpy array.
    skipped: reason -> the state-dict keys skipped for it.
    layout: the layout's name (a constant of the family's `names` module).
    reinitialised: paths of a head of another class count, left out.
  """
  variables: dict
  skipped: dict
  layout: str
  reinitialised: list = dataclasses.field(default_factory=list)

  def summary(self):
    """One line: what was converted and what skipped, for logs."""
    skipped = '; '.join(f'{len(keys)} {reason}'
                        for reason, keys in self.skipped.items())
    return (f'converted {len(self.variables)} tensors from the {self.layout} '
            f'layout; skipped {skipped or "nothing"}.')


def torch_to_variables(state_dict, config):
  """The variables of `build_model(config)` from a PyTorch state dict.

  Args:
    state_dict: names to numpy arrays or torch tensors in one of the layouts
      of `config.model.family` (see the module docstring); a bare state dict,
      or a checkpoint holding one under `state_dict`, `model` or `module`.
      What carries nothing to convert (BatchNorm counters, a pre-training
      decoder, a fixed position table) is skipped and logged.
    config: the run's config; `config.model` decides the model.

  Returns:
    `{'params': ..., 'batch_stats': ...}` of float32 numpy arrays; a head of
    another class count has fresh values (logged as a warning).

  Raises:
    ConversionError: listing the missing, unexpected and mis-shaped keys, or
      naming what a backbone-only file cannot provide (heads, SE gates).
  """
  conversion = convert_state_dict(state_dict, config)
  logging.info('%s', conversion.summary())
  return _with_fresh_heads(conversion, config)


def _with_fresh_heads(conversion, config):
  """The converted variables, nested, with fresh values for the heads that
  were left out (`Conversion.reinitialised`), from `build_model(config)`'s
  initialisation with `config.seed`."""
  variables = conversion.variables
  if conversion.reinitialised:
    init = jax.jit(functools.partial(models.build_model(config).init,
                                     train=False))
    fresh = flax.traverse_util.flatten_dict(jax.device_get(init(
        jax.random.key(config.seed),
        np.zeros(models.input_shape(config), np.float32))))
    variables = {**variables, **{path: np.asarray(fresh[path])
                                 for path in conversion.reinitialised}}
  nested = flax.traverse_util.unflatten_dict(variables)
  nested.setdefault('batch_stats', {})  # A ViT has none.
  return nested


def convert_state_dict(state_dict, config, backbone_only=False):
  """Like `torch_to_variables`, but returns the whole `Conversion`.

  With `backbone_only`, only the `backbone` variables are converted, and
  those the layout does not name (SE gates, in a torchvision state dict) are
  left out rather than reported missing. A head of another class count is
  left out too (`Conversion.reinitialised`), for a fresh one.
  """
  state_dict = state_dict_files.unwrap_state_dict(state_dict)
  names_of = models.FAMILIES[config.model.family].names
  try:
    layout = names_of.detect_layout(state_dict)
    state_dict, skipped = names_of.prepare(state_dict, layout, config)
  except ValueError as error:
    raise ConversionError(str(error)) from None
  targets = flax.traverse_util.flatten_dict(models.abstract_variables(config))
  if backbone_only:
    targets = {path: leaf for path, leaf in targets.items()
               if path[1] == 'backbone'}
  names = names_of.torch_names([path[1:] for path in targets], layout, config)
  names = {path: names[path[1:]] for path in targets}
  unnamed = [path for path, name in names.items() if name is None]
  if unnamed and not backbone_only:
    raise ConversionError(
        f'a {layout} state dict holds only a backbone; it has no weights for '
        f'{_listing(_join(path) for path in unnamed)}. Use it as '
        'config.init_from (maxmicro.convert.load_backbone_init) instead.')
  for key in state_dict:
    reason = names_of.skip_reason(key, layout, backbone_only)
    if reason:
      skipped.setdefault(reason, []).append(key)
  path_of = {name: path for path, name in names.items() if name is not None}
  reinitialised = []
  for name in _other_class_count(state_dict, path_of, targets, names_of):
    skipped.setdefault('a head of another class count (re-initialised)',
                       []).append(name)
    reinitialised.append(path_of.pop(name))
  _check_keys(state_dict, path_of, targets, skipped, names_of)
  variables = {
      path: names_of.to_flax(state_dict[name], path[-1]).astype(np.float32)
      for name, path in path_of.items()}
  return Conversion(variables=variables, skipped=skipped, layout=layout,
                    reinitialised=reinitialised)


def _other_class_count(state_dict, path_of, targets, names_of):
  """Names of the tensors of heads whose class count is not the model's:
  every tensor of such a head differs in its first dimension only."""
  by_head = {}
  for name, path in path_of.items():
    if path[1] != 'backbone' and name in state_dict:
      want = names_of.torch_shape(targets[path].shape, path[-1])
      have = tuple(state_dict[name].shape)
      by_head.setdefault(path[:-1], []).append((name, have, want))
  heads = []
  for tensors in by_head.values():
    if all(have != want and have[1:] == want[1:]
           for _, have, want in tensors):
      name, have, want = tensors[0]
      logging.warning('%s has %d classes, the config %d: left out, the head '
                      'starts fresh.', name, have[0], want[0])
      heads.extend(name for name, _, _ in tensors)
  return heads


def _check_keys(state_dict, path_of, targets, skipped, names_of):
  """Raises a ConversionError listing missing, extra and mis-shaped keys."""
  ignored = {key for keys in skipped.values() for key in keys}
  missing = [name for name in path_of if name not in state_dict]
  extra = [key for key in state_dict if key not in path_of
           and key not in ignored]
  misshaped = []
  for name, path in path_of.items():
    if name not in state_dict:
      continue
    want = names_of.torch_shape(targets[path].shape, path[-1])
    have = tuple(state_dict[name].shape)
    if have != want:
      misshaped.append(f'{name} {have} (the model wants {want})')
  problems = [
      f'{len(keys)} {kind}: {_listing(keys)}.'
      for kind, keys in (('missing', missing), ('unexpected', extra),
                         ('mis-shaped', misshaped)) if keys]
  if problems:
    raise ConversionError(
        'the state dict does not fit the config\'s model (depth, widths, SE, '
        'shift, heads): ' + ' '.join(problems))


def _listing(items):
  items = list(items)
  listed = ', '.join(items[:_MAX_LISTED])
  more = len(items) - _MAX_LISTED
  return listed + (f' and {more} more' if more > 0 else '')


def _join(path):
  return '/'.join(path)


def load_backbone_init(path, variables, config, what='config.init_from'):
  """Fresh `variables` with their backbone replaced by the weights in `path`.

  The trainer's `config.init_from` and the detector's `backbone_init_from`:
  any layout of the family (a torchvision ResNet, a VideoMAE pre-training
  encoder, a fine-tuned checkpoint whose backbone is then taken). Backbone
  params and batch_stats are replaced; what the file's layout does not name
  (the SE gates of a torchvision file, a pre-trained ViT's `fc_norm`) and
  the heads keep their fresh values.

  Args:
    path: the `.pth` / `.safetensors` file.
    variables: `{'params': ..., 'batch_stats': ...}` from `model.init`.
    config: the run's config.
    what: the config key that named `path`, for error messages.

  Returns:
    `variables` with the converted leaves swapped in; a leaf that was a
    jax.Array is put on the same sharding.

  Raises:
    ConversionError: naming `path`, for a missing or unreadable file or one
      that does not fit the model (for example another depth or width).
  """
  try:
    conversion = convert_state_dict(state_dict_files.read_state_dict(path), config,
                                    backbone_only=True)
  except ConversionError as error:
    message = str(error)
    prefix = f'{epath.Path(path)}: '
    raise ConversionError(
        f'{what}={path}: {message.removeprefix(prefix)}') from None
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  for leaf_path, value in conversion.variables.items():
    old = flat.get(leaf_path)
    if old is None or tuple(old.shape) != value.shape:
      raise ConversionError(
          f'{what}={path}: {_join(leaf_path)} has shape '
          f'{value.shape}, but the given variables hold '
          f'{None if old is None else tuple(old.shape)}.')
    value = value.astype(old.dtype)
    flat[leaf_path] = (jax.device_put(value, old.sharding)
                       if isinstance(old, jax.Array) else value)
  kept = sorted(_join(leaf_path) for leaf_path in flat
                if leaf_path not in conversion.variables
                and leaf_path[1] == 'backbone')
  logging.info('init_from %s: %s Backbone variables kept fresh: %s.', path,
               conversion.summary(), _listing(kept) or 'none')
  return flax.traverse_util.unflatten_dict(flat)


def write_workdir(out_dir, variables, config):
  """Writes `variables` and `config` as a workdir that `run.py` can read.

  The layout is the one training writes (`checkpoint.save_variables`), so
  `run.py --workdir=out_dir --mode=eval|predict|submit` reads it, and
  `--mode=train` fine-tunes from it. Refuses to write over checkpoints.
  """
  checkpoints = epath.Path(checkpoint.checkpoint_dir(out_dir))
  if checkpoints.exists() and any(checkpoints.iterdir()):
    raise ConversionError(
        f'{checkpoints} already holds checkpoints; choose a new --out.')
  checkpoint.save_variables(out_dir, variables, config)


def convert_checkpoint(torch_checkpoint, config, out_dir):
  """Reads a PyTorch file, converts it whole and writes `out_dir`."""
  conversion = convert_state_dict(state_dict_files.read_state_dict(torch_checkpoint), config)
  write_workdir(out_dir, _with_fresh_heads(conversion, config), config)
  return conversion


def main(argv):
  """The command line; see the module docstring."""
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  values = flags.FLAGS
  if not values['verbosity'].present:
    # Orbax logs every stage of a save at INFO; the summary is printed.
    logging.set_verbosity(logging.WARNING)
  try:
    conversion = convert_checkpoint(values.torch_checkpoint, values.config,
                                    values.out)
  except ConversionError as error:
    sys.exit(f'maxmicro.convert: {error}')
  print(conversion.summary())
  print(f'wrote {os.path.abspath(values.out)}')


def _define_flags():
  """Flags exist only when run as a program, so `run.py` can import this."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('torch_checkpoint', None,
                      'PyTorch .pth (or .safetensors) file to convert.')
  config_flags.DEFINE_config_file(
      'config', None, 'Config file of the model, e.g. configs/manet.py:paper.',
      lock_config=True)
  flags.DEFINE_string('out', None, 'Workdir to write.')
  flags.mark_flags_as_required(['torch_checkpoint', 'config', 'out'])


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
