"""Building the `ma52` TFDS dataset from Python, without TensorFlow.

  PYTHONPATH=. python -m maxmicro.data.build --manual_dir=/path/to/MA-52 \
      --data_dir=/path/to/tensorflow_datasets [--builder_config=small]

does what `tfds build tfds_builders/ma52` does, plus `--skip_bad_videos`.
"""

import argparse
import sys

import tensorflow_datasets as tfds

from maxmicro.data import ma52_layout
from tfds_builders.ma52 import ma52

BUILDER_CONFIGS = tuple(config.name for config in ma52.Ma52.BUILDER_CONFIGS)


def load_builder(data_dir, builder_config='default', **builder_kwargs):
  """The `ma52` builder of `builder_config` under `data_dir` (None: TFDS')."""
  if builder_config not in BUILDER_CONFIGS:
    raise ValueError(f'unknown ma52 builder config {builder_config!r}; '
                     f'known: {", ".join(BUILDER_CONFIGS)}.')
  return ma52.Ma52(config=builder_config, data_dir=data_dir, **builder_kwargs)


def is_built(data_dir, builder_config='default'):
  """Whether `ma52/<builder_config>` is fully built under `data_dir`."""
  return load_builder(data_dir, builder_config).is_prepared()


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
  builder = load_builder(data_dir, builder_config,
                         skip_bad_videos=skip_bad_videos,
                         num_decode_workers=num_decode_workers)
  if builder.is_prepared():
    return builder
  ma52_layout.check_manual_dir(manual_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--manual_dir', required=True)
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--builder_config', default='default',
                      choices=BUILDER_CONFIGS)
  parser.add_argument('--skip_bad_videos', action='store_true')
  parser.add_argument('--num_decode_workers', type=int, default=None)
  args = parser.parse_args(argv)
  try:
    builder = prepare_ma52(args.manual_dir, args.data_dir, args.builder_config,
                           skip_bad_videos=args.skip_bad_videos,
                           num_decode_workers=args.num_decode_workers)
  except ma52_layout.Ma52LayoutError as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  for split, info in builder.info.splits.items():
    print(f'{split}: {info.num_examples} videos')
  print(f'built in {builder.data_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
