r"""PyTorch weights to maxmicro variables.

Two sources: official MANet / TSM / TSN checkpoints (mmcv checkpoints of the
mmaction2 fork, or their bare state dicts), converted whole; and torchvision
ResNet ImageNet state dicts, the backbone initialisation of a run
(`config.init_from`, see `load_backbone_init`). Files are read without
unpickling code: `torch.load(..., weights_only=True)` or safetensors. torch is
imported only when a `.pth` file is read.

Convert an official checkpoint into a workdir that `run.py` evaluates:

  python -m maxmicro.convert --torch_checkpoint=manet_epoch_40.pth \
      --config=configs/manet.py:paper --out=workdirs/manet_official
  python run.py --config=configs/manet.py:paper \
      --workdir=workdirs/manet_official --mode=eval
"""

import dataclasses
import os
import sys

from absl import logging
from etils import epath
import flax
import jax
import numpy as np

from maxmicro import checkpoint
from maxmicro import models
from maxmicro import torch_names

# Problems listed per kind in an error message; the rest are counted.
_MAX_LISTED = 40


class ConversionError(ValueError):
  """A state dict or file that does not fit the model of a config."""


@dataclasses.dataclass
class Conversion:
  """Converted variables and what was left out on the way.

  Attributes:
    variables: Flax path (with its collection) -> float32 numpy array.
    skipped: reason -> the state-dict keys skipped for it.
    layout: `torch_names.MMACTION` or `torch_names.TORCHVISION`.
  """
  variables: dict
  skipped: dict
  layout: str

  def summary(self):
    """One line: what was converted and what skipped, for logs."""
    skipped = '; '.join(f'{len(keys)} {reason}'
                        for reason, keys in self.skipped.items())
    return (f'converted {len(self.variables)} tensors from the {self.layout} '
            f'layout; skipped {skipped or "nothing"}.')


def torch_to_variables(state_dict, config):
  """The variables of `build_model(config)` from a PyTorch state dict.

  Args:
    state_dict: names to numpy arrays or torch tensors; a bare state dict, or
      an mmcv checkpoint holding one under `state_dict`. `num_batches_tracked`
      and the official code's dead `action_p2_*` tensors are skipped (logged).
    config: the run's config; `config.model` decides the model.

  Returns:
    `{'params': ..., 'batch_stats': ...}` of float32 numpy arrays.

  Raises:
    ConversionError: listing the missing, unexpected and mis-shaped keys, or
      naming what a torchvision state dict cannot provide (heads, SE gates).
  """
  conversion = convert_state_dict(state_dict, config)
  logging.info('%s', conversion.summary())
  return flax.traverse_util.unflatten_dict(conversion.variables)


def convert_state_dict(state_dict, config, backbone_only=False):
  """Like `torch_to_variables`, but returns the whole `Conversion`.

  With `backbone_only`, only the `backbone` variables are converted, and
  those the layout does not name (SE gates, in a torchvision state dict) are
  left out rather than reported missing.
  """
  state_dict = unwrap_state_dict(state_dict)
  try:
    layout = torch_names.detect_layout(state_dict)
  except ValueError as error:
    raise ConversionError(str(error)) from None
  targets = flax.traverse_util.flatten_dict(models.abstract_variables(config))
  if backbone_only:
    targets = {path: leaf for path, leaf in targets.items()
               if path[1] == 'backbone'}
  conv1_wrapped = config.model.use_se or config.model.use_shift
  names = {path: torch_names.torch_name(path[1:], layout, conv1_wrapped)
           for path in targets}
  unnamed = [path for path, name in names.items() if name is None]
  if unnamed and not backbone_only:
    raise ConversionError(
        f'a {layout} state dict holds only a backbone; it has no weights for '
        f'{_listing(_join(path) for path in unnamed)}. Use it as '
        'config.init_from (maxmicro.convert.load_backbone_init) instead.')
  skipped = {}
  for key in state_dict:
    reason = torch_names.skip_reason(key, layout, backbone_only)
    if reason:
      skipped.setdefault(reason, []).append(key)
  path_of = {name: path for path, name in names.items() if name is not None}
  _check_keys(state_dict, path_of, targets, skipped)
  variables = {
      path: torch_names.to_flax(state_dict[name], path[-1]).astype(np.float32)
      for name, path in path_of.items()}
  return Conversion(variables=variables, skipped=skipped, layout=layout)


def _check_keys(state_dict, path_of, targets, skipped):
  """Raises a ConversionError listing missing, extra and mis-shaped keys."""
  ignored = {key for keys in skipped.values() for key in keys}
  missing = [name for name in path_of if name not in state_dict]
  extra = [key for key in state_dict if key not in path_of
           and key not in ignored]
  misshaped = []
  for name, path in path_of.items():
    if name not in state_dict:
      continue
    want = torch_names.torch_shape(targets[path].shape, path[-1])
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


def unwrap_state_dict(loaded):
  """A bare `{name: numpy array}` from a state dict or an mmcv checkpoint.

  Takes the `state_dict` entry of an mmcv checkpoint, drops the `module.`
  prefix that DataParallel adds, and turns torch tensors into numpy arrays.
  """
  if not isinstance(loaded, dict):
    raise ConversionError(
        f'expected a state dict (a dict of tensors), got '
        f'{type(loaded).__name__}.')
  if isinstance(loaded.get('state_dict'), dict):
    loaded = loaded['state_dict']
  state_dict = {}
  for key, value in loaded.items():
    if not hasattr(value, 'shape'):
      raise ConversionError(
          f'{key!r} is a {type(value).__name__}, not a tensor; is this a '
          'state dict?')
    state_dict[key.removeprefix('module.')] = _to_numpy(value)
  return state_dict


def _to_numpy(value):
  if hasattr(value, 'detach'):  # A torch tensor: no torch import needed.
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # numpy has no bfloat16.
    return value.numpy()
  return np.asarray(value)


def read_state_dict(path):
  """The state dict in a `.pth`/`.pt` (torch) or `.safetensors` file.

  Raises ConversionError naming `path` if it is missing or unreadable.
  """
  path = epath.Path(path)
  if not path.exists():
    raise ConversionError(f'{path}: no such file.')
  try:
    if path.suffix == '.safetensors':
      loaded = _safetensors_load(path)
    else:
      with path.open('rb') as file:
        loaded = _torch_load(file)
  except ImportError as error:
    raise ConversionError(
        f'{path}: reading it needs the {error.name} package '
        f'(pip install {error.name}).') from None
  except Exception as error:  # pylint: disable=broad-except
    raise ConversionError(
        f'{path}: not a readable PyTorch or safetensors state dict '
        f'({_reason(error)}).') from None
  try:
    return unwrap_state_dict(loaded)
  except ConversionError as error:
    raise ConversionError(f'{path}: {error}') from None


def _safetensors_load(path):
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  return safetensors.numpy.load(path.read_bytes())


def _torch_load(file):
  """`torch.load` that unpickles tensors, containers and numpy data only.

  mmcv checkpoints keep numpy scalars (best scores) in their `meta`; those
  are allowed, under their numpy 1 and 2 module names. Nothing that can run
  code is.
  """
  import torch  # pylint: disable=g-import-not-at-top
  multiarray = np._core.multiarray  # pylint: disable=protected-access
  rebuild_array = getattr(multiarray, '_reconstruct')
  allowed = [np.ndarray, np.dtype, multiarray.scalar, rebuild_array,
             (multiarray.scalar, 'numpy.core.multiarray.scalar'),
             (rebuild_array, 'numpy.core.multiarray._reconstruct')]
  allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes)
              if name.endswith('DType')]
  with torch.serialization.safe_globals(allowed):
    return torch.load(file, weights_only=True, map_location='cpu')


def _reason(error):
  """The telling line of an exception: torch's weights-only errors are long."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  telling = [line for line in lines if 'Unsupported global' in line]
  return f'{type(error).__name__}: {(telling or lines or [""])[0]}'


def load_backbone_init(path, variables, config, what='config.init_from'):
  """Fresh `variables` with their backbone replaced by the weights in `path`.

  The trainer's `config.init_from`: a torchvision ResNet ImageNet state dict
  (or an official checkpoint, whose backbone is then taken). Backbone params
  and batch_stats are replaced; what the file's layout does not name (the SE
  gates of a torchvision file) and the heads keep their fresh values.

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
      that does not fit the model (for example another ResNet depth).
  """
  try:
    conversion = convert_state_dict(read_state_dict(path), config,
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
  conversion = convert_state_dict(read_state_dict(torch_checkpoint), config)
  write_workdir(out_dir, flax.traverse_util.unflatten_dict(
      conversion.variables), config)
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
