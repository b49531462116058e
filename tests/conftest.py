"""Session-wide test data: a fake MA-52 on disk and its built TFDS records.

Fixtures (all session-scoped, built once per pytest process):
  fake_ma52_dir: a `write_fake_ma52` directory in the official MA-52 layout
    (2 train, 1 val, 1 test video per class; 40x48 portrait, 12-20 frames).
  built_fake_ma52: `BuiltMa52` of that directory built as `ma52/small`:
    `.data_dir`, `.builder_config`, `.manual_dir`, `.data_config` (the tiny
    config's `config.data` pointing at it, num_workers 0) and `.overrides`
    (the same as `--config.data.*` overrides).
"""

import dataclasses
import os
import pathlib

from absl import flags
import ml_collections
import pytest

from configs import common
from maxmicro.data import build
from maxmicro.data import synthetic

FAKE_VIDEOS_PER_CLASS = (2, 1, 1)  # train, val, test
FAKE_SIZE = (40, 48)  # (width, height), portrait like MA-52.
FAKE_NUM_FRAMES = (12, 20)


@dataclasses.dataclass(frozen=True)
class BuiltMa52:
  """A built fake MA-52 and how to point a config at it."""
  data_dir: pathlib.Path
  builder_config: str
  manual_dir: pathlib.Path
  data_config: ml_collections.ConfigDict  # A copy per access; see below.
  overrides: dict


@pytest.fixture(scope='session', autouse=True)
def _absl_flags_parsed():
  """Grain's worker processes read absl flags; tests run without absl.app."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope='session', autouse=True)
def _cache_in_tmp(tmp_path_factory):
  """Commands that cache compiled code (`compile_cache`) write under
  `$XDG_CACHE_HOME`, here and in the commands tests run as subprocesses:
  not into the home directory."""
  os.environ['XDG_CACHE_HOME'] = str(tmp_path_factory.mktemp('cache'))


@pytest.fixture(scope='session')
def fake_ma52_dir(tmp_path_factory):
  """A fake MA-52 (real H.264 mp4 files, official layout); do not modify."""
  return synthetic.write_fake_ma52(
      tmp_path_factory.mktemp('fake_ma52'),
      videos_per_class=FAKE_VIDEOS_PER_CLASS, size=FAKE_SIZE,
      num_frames=FAKE_NUM_FRAMES, seed=0)


@pytest.fixture(scope='session')
def built_fake_ma52(fake_ma52_dir, tmp_path_factory):
  """`fake_ma52_dir` built as `ma52/small`; do not modify the files."""
  data_dir = tmp_path_factory.mktemp('tfds_data')
  build.prepare_ma52(fake_ma52_dir, data_dir, builder_config='small',
                     num_decode_workers=1)
  data_config = common.apply_tiny(common.get_base_config()).data
  data_config.data_dir = str(data_dir)
  data_config.builder_config = 'small'
  data_config.num_workers = 0
  return BuiltMa52(
      data_dir=data_dir, builder_config='small', manual_dir=fake_ma52_dir,
      data_config=data_config,
      overrides={'data.data_dir': str(data_dir),
                 'data.builder_config': 'small'})


@pytest.fixture
def data_config(built_fake_ma52):
  """A fresh, mutable copy of `built_fake_ma52.data_config` per test."""
  return ml_collections.ConfigDict(built_fake_ma52.data_config.to_dict())
