r"""Building the `ma52` and `mma52` TFDS datasets, without TensorFlow.

  PYTHONPATH=. python -m maxmicro.data.build --manual_dir=/path/to/MA-52 \
      --data_dir=/path/to/tensorflow_datasets [--builder_config=small]
  PYTHONPATH=. python -m maxmicro.data.build --dataset=mma52 \
      --manual_dir=/path/to/MMA-52 --data_dir=/path/to/tensorflow_datasets

does what `tfds build tfds_builders/<dataset>` does, plus `--skip_bad_videos`
(MA-52 only).
"""

import sys

import tensorflow_datasets as tfds

from maxmicro.data import ma52_layout
from maxmicro.data import mma52_layout
from tfds_builders.ma52 import ma52
from tfds_builders.mma52 import mma52

# TFDS name -> (builder class, layout module with check_manual_dir).
_DATASETS = {
    'ma52': (ma52.Ma52, ma52_layout),
    'mma52': (mma52.Mma52, mma52_layout),
}
DATASETS = tuple(_DATASETS)
BUILDER_CONFIGS = tuple(config.name for config in ma52.Ma52.BUILDER_CONFIGS)


def builder_configs(dataset='ma52'):
  """The builder config names of `dataset` ('ma52' or 'mma52')."""
  builder_class, _ = _dataset(dataset)
  return tuple(config.name for config in builder_class.BUILDER_CONFIGS)


def _dataset(dataset):
  if dataset not in _DATASETS:
    raise ValueError(f'unknown dataset {dataset!r}; known: '
                     f'{", ".join(DATASETS)}.')
  return _DATASETS[dataset]


def load_builder(data_dir, builder_config='default', *, dataset='ma52',
                 **builder_kwargs):
  """The `dataset` builder of `builder_config` under `data_dir` (None: TFDS').

  Args:
    data_dir: the TFDS data directory; None: TFDS' default.
    builder_config: a name of `builder_configs(dataset)`.
    dataset: 'ma52' or 'mma52'.
    **builder_kwargs: for the builder (e.g. `num_decode_workers`).
  """
  builder_class, _ = _dataset(dataset)
  if builder_config not in builder_configs(dataset):
    raise ValueError(f'unknown {dataset} builder config {builder_config!r}; '
                     f'known: {", ".join(builder_configs(dataset))}.')
  return builder_class(config=builder_config, data_dir=data_dir,
                       **builder_kwargs)


def is_built(data_dir, builder_config='default', *, dataset='ma52'):
  """Whether `<dataset>/<builder_config>` is fully built under `data_dir`."""
  return load_builder(data_dir, builder_config, dataset=dataset).is_prepared()


def prepare_ma52(manual_dir, data_dir, builder_config='default',
                 skip_bad_videos=False, num_decode_workers=None):
  """Builds `ma52/<builder_config>` under `data_dir` unless already built.

  Args:
    manual_dir: the MA-52 download in the official layout (see
      `tfds_builders/ma52`); not read if the dataset is already built.
    data_dir: the TFDS data directory to write to; None: TFDS' default.
    builder_config: 'default' (short side 256, every frame) or 'small' (short
      side 64, at most 16 frames).
    skip_bad_videos: leave out (and report) videos that are missing or cannot
      be decoded, instead of stopping.
    num_decode_workers: decoding processes; None: one per core.

  Decoding runs in `num_decode_workers` spawned processes: call this from a
  notebook, an absl/`if __name__ == '__main__':` entry point, or a test, not
  at the top level of a script without that guard.

  Returns:
    The prepared builder (`builder.as_data_source(split)` reads it).

  Raises:
    Ma52LayoutError: the manual directory is missing or mis-laid, or its lists
      or videos are bad; the message names every offending file and line, and
      nothing is left where TFDS would read it.
  """
  return _prepare('ma52', manual_dir, data_dir, builder_config,
                  skip_bad_videos=skip_bad_videos,
                  num_decode_workers=num_decode_workers)


def prepare_mma52(manual_dir, data_dir, builder_config='default',
                  num_decode_workers=None):
  """Builds `mma52/<builder_config>` under `data_dir` unless already built.

  Args:
    manual_dir: the MMA-52 download in the official layout (see
      `tfds_builders/mma52`); not read if the dataset is already built.
    data_dir: the TFDS data directory to write to; None: TFDS' default.
    builder_config: 'default' (short side 256) or 'small' (short side 64);
      both keep every frame.
    num_decode_workers: decoding processes; None: one per core (see
      `prepare_ma52` on where to call this from).

  Returns:
    The prepared builder.

  Raises:
    Mma52LayoutError: the manual directory is missing or mis-laid, or its
      annotation files or videos are bad; the message names every offending
      file and line, and nothing is left where TFDS would read it.
  """
  return _prepare('mma52', manual_dir, data_dir, builder_config,
                  num_decode_workers=num_decode_workers)


def _prepare(dataset, manual_dir, data_dir, builder_config, **builder_kwargs):
  """Builds `<dataset>/<builder_config>` unless already built."""
  builder = load_builder(data_dir, builder_config, dataset=dataset,
                         **builder_kwargs)
  if builder.is_prepared():
    return builder
  _, layout = _DATASETS[dataset]
  layout.check_manual_dir(manual_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def main(argv):
  """The command line; see the module docstring."""
  if len(argv) > 1:
    sys.exit(f'maxmicro.data.build: unexpected arguments {argv[1:]}')
  from absl import flags  # pylint: disable=g-import-not-at-top
  values = flags.FLAGS
  if values.skip_bad_videos and values.dataset != 'ma52':
    sys.exit('maxmicro.data.build: --skip_bad_videos applies to '
             '--dataset=ma52 only.')
  options = ({'skip_bad_videos': values.skip_bad_videos}
             if values.dataset == 'ma52' else {})
  try:
    builder = _prepare(values.dataset, values.manual_dir, values.data_dir,
                       values.builder_config,
                       num_decode_workers=values.num_decode_workers, **options)
  except ma52_layout.LayoutError as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  for split, info in builder.info.splits.items():
    print(f'{split}: {info.num_examples} videos')
  print(f'built in {builder.data_dir}')
  return 0


def _define_flags():
  """Flags exist only when run as a program, so importing defines none."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum('dataset', 'ma52', DATASETS, 'Dataset to build.')
  flags.DEFINE_string('manual_dir', None,
                      'The official download, unpacked (see the builder).')
  flags.DEFINE_string('data_dir', None,
                      'TFDS data directory to write (default: TFDS\').')
  all_configs = dict.fromkeys(name for dataset in DATASETS
                              for name in builder_configs(dataset))
  flags.DEFINE_enum('builder_config', 'default', list(all_configs),
                    'default: short side 256; small: short side 64.')
  flags.DEFINE_bool('skip_bad_videos', False,
                    'ma52: leave out videos that are missing or cannot be '
                    'decoded, instead of stopping.')
  flags.DEFINE_integer('num_decode_workers', None,
                       'Decoding processes (default: one per core).',
                       lower_bound=1)
  flags.mark_flag_as_required('manual_dir')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
