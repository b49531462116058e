"""PyTorch weight files as `{name: numpy array}` state dicts.

`read_state_dict` reads `.pth` / `.pt` files without unpickling code
(`torch.load(..., weights_only=True)`; torch is imported only then) and
`.safetensors` files; `unwrap_state_dict` takes the weights out of the
checkpoints that hold them (mmcv's `state_dict`, VideoMAE's `model` or
`module`). Which layout the names follow is `maxmicro.convert`'s concern.
"""

import pickle
import re

from etils import epath
import numpy as np


class ConversionError(ValueError):
  """A state dict or file that does not fit the model of a config."""


def unwrap_state_dict(loaded):
  """A bare `{name: numpy array}` from a state dict or an mmcv checkpoint.

  Takes the `state_dict` entry of an mmcv checkpoint (`model` or `module`
  of a VideoMAE one), drops the `module.`
  prefix that DataParallel adds, and turns torch tensors into numpy arrays.
  """
  if not isinstance(loaded, dict):
    raise ConversionError(
        f'expected a state dict (a dict of tensors), got '
        f'{type(loaded).__name__}.')
  # mmcv keeps the weights under `state_dict`, VideoMAE's scripts under
  # `model` or `module`.
  for entry in ('state_dict', 'model', 'module'):
    if isinstance(loaded.get(entry), dict):
      loaded = loaded[entry]
      break
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


class _Inert:
  """Stands in for a class a checkpoint names outside its weights (an
  mmengine `HistoryBuffer` in `message_hub`, say): it takes whatever it is
  built with and runs none of that class's code."""

  def __init__(self, *args, **kwargs):
    del args, kwargs


# Classes a checkpoint may name besides its weights, each replaced by an
# inert object; more than this many is not a checkpoint we read.
_MAX_STAND_INS = 50


def _torch_load(file):
  """`torch.load` that unpickles tensors, containers and numpy data only.

  mmcv checkpoints keep numpy scalars (best scores) in their `meta`; those
  are allowed, under their numpy 1 and 2 module names. mmengine checkpoints
  (mmaction2 1.x) also pickle training state (`message_hub`'s history
  buffers, scheduler state): each class named there is read as an `_Inert`
  object, never imported or run, and the weights come out as in any other
  file. Nothing that can run code is unpickled.
  """
  import torch  # pylint: disable=g-import-not-at-top
  multiarray = np._core.multiarray  # pylint: disable=protected-access
  rebuild_array = getattr(multiarray, '_reconstruct')
  allowed = [np.ndarray, np.dtype, multiarray.scalar, rebuild_array,
             (multiarray.scalar, 'numpy.core.multiarray.scalar'),
             (rebuild_array, 'numpy.core.multiarray._reconstruct')]
  allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes)
              if name.endswith('DType')]
  start = file.tell()
  for _ in range(_MAX_STAND_INS):
    file.seek(start)
    try:
      with torch.serialization.safe_globals(allowed):
        return torch.load(file, weights_only=True, map_location='cpu')
    except pickle.UnpicklingError as error:
      name = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(error))
      if not name:
        raise
      allowed.append((_Inert, name.group(1)))
  raise pickle.UnpicklingError(
      f'names more than {_MAX_STAND_INS} classes besides its weights.')


def _reason(error):
  """The telling line of an exception: torch's weights-only errors are long."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  telling = [line for line in lines if 'Unsupported global' in line]
  return f'{type(error).__name__}: {(telling or lines or [""])[0]}'
