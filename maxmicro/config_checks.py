"""Bad command lines and configs fail before any work, naming the field.

`parse_flags` is run.py's absl `flags_parser`: ml_collections applies
`--config.a.b=value` overrides while absl parses flags, before `main` runs,
and raises a bare `AttributeError: "'b'"` for an unknown field, so it is
caught here and said in one paragraph with the fields that exist.
`check_config` checks a loaded config once, where a command starts: the
values of enumerated fields (listed from the dicts the modules dispatch on,
never copied), numeric ranges, batch sizes against the devices and
processes, and that `init_from` exists. The files a task loads (label
vectors) are checked when it loads them, before any data is read.
"""

import difflib
import os
import sys

from absl import flags
import ml_collections

from maxmicro import labels
from maxmicro import losses
from maxmicro import models
from maxmicro import optim
from maxmicro import sharding
from maxmicro import tasks
from maxmicro.data import label_shuffles
from maxmicro.data import transforms

# What train.py does with a step whose loss or gradients are NaN or Inf: it
# never applies it; 'stop' then ends the run naming the step, 'skip' goes on
# and counts such steps (`nonfinite_steps` in metrics.jsonl).
NONFINITE_POLICIES = ('stop', 'skip')

# Enumerated fields and their allowed values, from the modules' own tables.
CHOICES = {
    'data.dataset': tuple(tasks.TASKS),
    'data.train_crop': transforms.TRAIN_CROPS,
    'model.dtype': ('auto', *models.DTYPES),
    'model.family': tuple(models.FAMILIES),
    'loss.embedding': tuple(losses.EMBEDDING_LOSSES),
    'optim.name': tuple(optim.OPTIMIZERS),
    'optim.schedule': tuple(optim.SCHEDULES),
    'train.nonfinite_policy': NONFINITE_POLICIES,
    'detection.shuffle_train_labels': label_shuffles.LABEL_SHUFFLES,
}
# Fields that must be positive integers.
POSITIVE = ('train.global_batch_size', 'eval.global_batch_size',
            'train.log_every_steps', 'train.keep_checkpoints',
            'train.grad_accum_steps',
            'model.num_segments',
            # Detection (configs/mmad.py).
            'model.num_levels', 'model.width', 'detection.frame_stride',
            'detection.window_size', 'detection.eval_window_stride',
            'detection.max_instances', 'detection.features_batch_size',
            'detection.candidates_per_window', 'detection.max_detections')
# Positive integers, or None for the rule the trainer applies (`Cadence.of`):
# None checkpoints once per epoch.
POSITIVE_OR_NONE = ('train.checkpoint_every_steps',)

_CONFIG_PREFIX = '--config.'


class FlagError(Exception):
  """A command line that cannot be parsed; the message says why."""


def _get(config, dotted):
  for key in dotted.split('.'):
    config = config[key]
  return config


def _has(config, dotted):
  return _describe_unknown(config, dotted) is None


def _describe_unknown(config, dotted):
  """'config.a has no field b; did you mean ...' for the first missing key."""
  node, path = config, 'config'
  for key in dotted.split('.'):
    if not isinstance(node, ml_collections.ConfigDict):
      return f'{path} is a value, not a section, so it has no field {key!r}.'
    if key not in node:
      fields = sorted(node.keys())
      close = difflib.get_close_matches(key, fields, n=3)
      hint = f' Did you mean {" or ".join(close)}?' if close else ''
      return (f'{path} has no field {key!r}.{hint} Its fields: '
              f'{", ".join(fields)}.')
    node, path = node[key], f'{path}.{key}'
  return None


def _overrides(argv):
  """`(dotted field, value)` of each `--config.a.b=value` in argv."""
  for arg in argv[1:]:
    if arg.startswith(_CONFIG_PREFIX):
      field, _, value = arg[len(_CONFIG_PREFIX):].partition('=')
      yield field, value


def _load_config(argv):
  """The `--config=` file's config without overrides, or None."""
  if 'config' not in flags.FLAGS:
    return None
  for arg in argv[1:]:
    if arg.startswith('--config='):
      try:
        return flags.FLAGS['config'].parser.parse(arg[len('--config='):])
      except Exception:  # pylint: disable=broad-exception-caught
        return None  # The file itself is bad: the error says so.
  return None


def _explain(error, argv):
  """One paragraph about a flag-parsing error, naming the field."""
  config = _load_config(argv)
  for field, value in _overrides(argv):
    if config is None:
      break
    unknown = _describe_unknown(config, field)
    if unknown:
      return f'--config.{field}={value}: unknown config field: {unknown}'
    if f'--config.{field}' in str(error):
      current = _get(config, field)
      kind = 'None' if current is None else type(current).__name__
      allowed = _choices(config).get(field)
      more = (f' Allowed values: {", ".join(map(str, allowed))}.'
              if allowed else '')
      return (f'--config.{field}={value}: config.{field} is of type {kind} '
              f'(now {current!r}) and {value!r} is not.{more}')
  if isinstance(error, flags.Error):
    return f'{error}. Run with --helpshort to see the flags.'
  return f'{type(error).__name__}: {error}'


def parse_flags(argv):
  """absl's flag parsing, with a one-paragraph message on bad flags.

  Exits 1 with the message on stderr (the traceback too with `--verbose`).
  """
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError,
          ValueError) as error:
    if '--verbose' in argv:
      raise
    print(f'error (command line): {_explain(error, argv)}', file=sys.stderr)
    sys.exit(1)


def _choices(config):
  """CHOICES with those of the config's backbone family (its `choices`)."""
  family = models.FAMILIES.get(config.model.get('family'))
  return {**CHOICES, **(family.choices if family else {})}


def check_config(config, training=True):
  """Checks a config's values before any data, file or device work.

  With `training` False (evaluation, prediction, submission of a saved
  config), the training batch size and `init_from` are not checked.

  Raises:
    ValueError: a field has a value outside its allowed set (listed), a
      number is out of range, a batch size does not split over the devices
      and processes, or `init_from` does not exist.
  """
  # A task's config has its own sections only (detection's `model` is the
  # detector, without `depth`), so a field it lacks is not checked.
  family = config.model.get('family')
  for field, allowed in _choices(config).items():
    if not _has(config, field):
      continue
    value = _get(config, field)
    if value not in allowed:
      raise ValueError(
          f'config.{field}={value!r} is not allowed; allowed values: '
          f'{", ".join(map(str, allowed))}.')
  for field in POSITIVE + POSITIVE_OR_NONE:
    if not _has(config, field):
      continue
    value = _get(config, field)
    if value is None and field in POSITIVE_OR_NONE:
      continue
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'config.{field}={value!r} must be a positive '
                       'integer' + (' or None' if field in POSITIVE_OR_NONE
                                    else '') + '.')
  if _has(config, 'optim.schedule_epochs'):
    schedule_epochs = config.optim.schedule_epochs
    if schedule_epochs is not None and not schedule_epochs > 0:
      raise ValueError(f'config.optim.schedule_epochs={schedule_epochs!r} '
                       'must be positive, or None for the run\'s epochs.')
  if family in models.FAMILIES:
    models.FAMILIES[family].check_config(config)
    if (_has(config, 'optim.layer_decay') and config.optim.layer_decay != 1.0
        and not models.FAMILIES[family].layer_decay):
      raise ValueError(
          f'config.optim.layer_decay={config.optim.layer_decay}: layer-wise '
          f'decay is for ViTs; use 1.0 for config.model.family={family!r}.')
  if _has(config, 'data.color_jitter'):
    _check_augmentation(config.data)
  if config.data.dataset == 'mma52':
    _check_detection(config)
  elif (config.loss.embedding != 'none' and
        not config.model.embedding_head):
    raise ValueError(f'config.loss.embedding={config.loss.embedding!r} '
                     'needs the label-embedding head: set '
                     'config.model.embedding_head=True, or '
                     "config.loss.embedding='none'.")
  elif (config.loss.embedding == 'contrastive' and
        config.loss.temperature <= 0):
    raise ValueError(f'config.loss.temperature={config.loss.temperature} '
                     'must be positive.')
  mesh = sharding.make_mesh()
  for section in ('train', 'eval') if training else ('eval',):
    sharding.check_batch_size(config[section].global_batch_size, mesh, section)
  if training and config.init_from and not os.path.isfile(config.init_from):
    raise ValueError(f'config.init_from={config.init_from!r} does not exist; '
                     'give a PyTorch state dict file (.pth or .safetensors) '
                     'of the backbone, or None.')


# (field, low, high) of the augmentation ranges and amounts.
_AUGMENTATION_BOUNDS = (('crop_area_range', 0.0, 1.0),
                        ('crop_aspect_range', 0.0, float('inf')),
                        ('erase_area_range', 0.0, 1.0))


def _check_augmentation(data):
  """Ranges in order and inside their bounds; amounts mmaction2 accepts."""
  for field, low, high in _AUGMENTATION_BOUNDS:
    value = tuple(data[field])
    if not (len(value) == 2 and low < value[0] <= value[1] <= high):
      raise ValueError(f'config.data.{field}={value!r} must be (min, max) '
                       f'with {low} < min <= max <= {high}.')
  jitter = tuple(data.color_jitter)
  if (len(jitter) != 4 or not all(0 <= x <= 1 for x in jitter[:3]) or
      not 0 <= jitter[3] <= 0.5):
    raise ValueError(
        f'config.data.color_jitter={jitter!r} must be (brightness, contrast, '
        'saturation, hue) with the first three in [0, 1] and hue in [0, 0.5].')
  if not 0 <= data.erase_probability <= 1:
    raise ValueError(f'config.data.erase_probability={data.erase_probability}'
                     ' must be in [0, 1].')
  for field in ('mixup_alpha', 'cutmix_alpha'):
    if data[field] < 0:
      raise ValueError(f'config.data.{field}={data[field]} must be >= 0 '
                       '(0 is off).')


def _check_detection(config):
  """The detection task's rules (configs/mmad.py)."""
  classes = config.detection.classes
  if classes is not None and (
      not classes or len(set(classes)) != len(classes) or
      not all(isinstance(c, int) and 0 <= c < labels.NUM_ACTIONS
              for c in classes)):
    raise ValueError(f'config.detection.classes={classes!r} must be None or '
                     f'distinct class ids in 0-{labels.NUM_ACTIONS - 1}.')
  if config.model.kernel_size % 2 == 0:
    raise ValueError(f'config.model.kernel_size={config.model.kernel_size} '
                     'must be odd.')
  for field in ('data.train_split', 'data.eval_split'):
    if _get(config, field) not in ('train', 'validation'):
      raise ValueError(f'config.{field}={_get(config, field)!r}: features '
                       'exist for whole splits only; use train or '
                       'validation.')
  if config.init_from:
    raise ValueError(f'config.init_from={config.init_from!r}: the detector '
                     'starts from scratch; its backbone comes from '
                     'config.detection.backbone_workdir or '
                     'config.detection.backbone_init_from.')
  _check_backbone_source(config.detection)
  if _has(config, 'detection.end_to_end'):  # Older saved configs lack it.
    _check_end_to_end(config.detection)


def _check_backbone_source(detection):
  """One source of backbone weights: a workdir or an ImageNet file."""
  if not _has(detection, 'backbone_init_from'):  # Older saved configs.
    return
  if detection.backbone_workdir and detection.backbone_init_from:
    raise ValueError(
        f'config.detection.backbone_workdir={detection.backbone_workdir!r} '
        'and config.detection.backbone_init_from='
        f'{detection.backbone_init_from!r} both name the backbone; set one '
        '(clear the other with --config.detection.backbone_workdir= or '
        '--config.detection.backbone_init_from=).')


def _check_end_to_end(detection):
  """End-to-end detection's fields (configs/mmad.py)."""
  if not isinstance(detection.end_to_end, bool):
    raise ValueError(f'config.detection.end_to_end={detection.end_to_end!r} '
                     'must be True or False.')
  multiplier = detection.backbone_lr_multiplier
  if (isinstance(multiplier, bool) or
      not isinstance(multiplier, (int, float)) or not multiplier >= 0):
    raise ValueError(f'config.detection.backbone_lr_multiplier={multiplier!r}'
                     ' must be a number >= 0 (0 freezes the backbone).')
  if detection.end_to_end and detection.shuffle_train_labels != 'none':
    raise ValueError(
        'config.detection.shuffle_train_labels='
        f'{detection.shuffle_train_labels!r}: the label-shuffling controls '
        'run on features; set config.detection.end_to_end=False for them.')
