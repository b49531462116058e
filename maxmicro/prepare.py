"""Making sure the dataset a config reads is built, or saying how to build it.

The real MA-52 takes hours to build, so a run never builds it by itself: it
stops with the command that does. A config with `synthetic_data` set (the
demo) writes that fake MA-52 and builds it when it is absent.
"""

import os

import tensorflow_datasets as tfds

from maxmicro.data import build
from maxmicro.data import synthetic


class DatasetMissingError(Exception):
  """The dataset a config names is not built."""


def _missing_message(config):
  data = config.data
  where = data.data_dir or '~/tensorflow_datasets (TFDS default)'
  return (
      f'the MA-52 dataset (ma52/{data.builder_config}) is not built under '
      f'{where} (config.data.data_dir). Build it once from the official '
      'download with: PYTHONPATH=. python -m maxmicro.data.build '
      '--manual_dir=/path/to/MA-52 '
      f'--data_dir={data.data_dir or "~/tensorflow_datasets"} '
      f'--builder_config={data.builder_config}. Or try everything on '
      'synthetic data first: python run.py --config=configs/demo.py '
      '--workdir=workdirs/demo')


def ensure_dataset(config, log=print):
  """Checks that `config.data` is built; writes and builds the demo's.

  Raises:
    DatasetMissingError: the dataset is not built and the config has no
      `synthetic_data` to make; the message gives the build command.
  """
  data = config.data
  if build.is_built(data.data_dir, data.builder_config):
    return
  fake = config.synthetic_data
  if fake is None:
    raise DatasetMissingError(_missing_message(config))
  list_file = os.path.join(fake.manual_dir, 'test_list_videos.txt')
  if not os.path.exists(list_file):
    log(f'writing the synthetic MA-52 to {fake.manual_dir} '
        f'({fake.videos_per_class} train videos per class)')
    synthetic.write_fake_ma52(fake.manual_dir,
                              videos_per_class=fake.videos_per_class,
                              size=tuple(fake.size),
                              num_frames=fake.num_frames, seed=fake.seed)
  log(f'building ma52/{data.builder_config} under {data.data_dir}')
  tfds.disable_progress_bar()  # A few seconds; one line says what happens.
  build.prepare_ma52(fake.manual_dir, data.data_dir, data.builder_config)


def ensure_mma52(config, log=print):
  """`ensure_dataset` for MMA-52 (the detection task): checks that
  `mma52/<builder_config>` is built; writes and builds the demo's.

  Raises:
    DatasetMissingError: not built and no `synthetic_data` to make; the
      message gives the build command.
  """
  data = config.data
  if build.is_built(data.data_dir, data.builder_config, dataset='mma52'):
    return
  fake = config.synthetic_data
  if fake is None:
    where = data.data_dir or '~/tensorflow_datasets'
    raise DatasetMissingError(
        f'the MMA-52 dataset (mma52/{data.builder_config}) is not built under '
        f'{where} (config.data.data_dir). Build it once from the official '
        'download with: PYTHONPATH=. python -m maxmicro.data.build '
        f'--dataset=mma52 --manual_dir=/path/to/MMA-52 --data_dir={where} '
        f'--builder_config={data.builder_config}. Or try detection on '
        'synthetic data first: make detection-demo')
  if not os.path.exists(os.path.join(fake.manual_dir, 'anns', 'test.csv')):
    log(f'writing the synthetic MMA-52 to {fake.manual_dir} '
        f'({fake.videos_per_split} videos per split)')
    synthetic.write_fake_mma52(
        fake.manual_dir, videos_per_split=tuple(fake.videos_per_split),
        size=tuple(fake.size), num_frames=tuple(fake.num_frames),
        instances_per_video=tuple(fake.instances_per_video),
        instance_frames=tuple(fake.instance_frames),
        classes=fake.classes and list(fake.classes), seed=fake.seed)
  log(f'building mma52/{data.builder_config} under {data.data_dir}')
  tfds.disable_progress_bar()
  build.prepare_mma52(fake.manual_dir, data.data_dir, data.builder_config)
