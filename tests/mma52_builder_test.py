"""The mma52 TFDS builder: end to end from a fake MMA-52, and bad input."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from maxmicro.data import build
from maxmicro.data import mma52_layout
from maxmicro.data import records
from maxmicro.data import synthetic
from maxmicro.data import video

_REPO = pathlib.Path(__file__).resolve().parents[1]
_COUNTS = {'train': 4, 'validation': 2, 'test': 2}


@pytest.fixture(scope='module')
def fake_mma52(tmp_path_factory):
  """A fake MMA-52 (32x40, 150-200 frames), do not modify."""
  return synthetic.write_fake_mma52(
      tmp_path_factory.mktemp('fake_mma52'), videos_per_split=(4, 2, 2),
      size=(32, 40), num_frames=(150, 200), seed=0)


@pytest.fixture(scope='module')
def built(fake_mma52, tmp_path_factory):
  """The data dir of `fake_mma52` built as `mma52/small`."""
  data_dir = tmp_path_factory.mktemp('tfds_mma52')
  build.prepare_mma52(fake_mma52, data_dir, 'small', num_decode_workers=1)
  return data_dir


def _assert_nothing_built(data_dir):
  assert not build.is_built(data_dir, 'small', dataset='mma52')
  leftovers = [p for p in data_dir.rglob('*')
               if p.is_file() and '.config' not in p.parts]
  assert not leftovers, leftovers
  assert not list(data_dir.rglob('*incomplete*'))


def test_builder_contract():
  builder = build.load_builder('/nonexistent', 'default', dataset='mma52')
  assert builder.info.file_format.value == 'array_record'
  assert builder.builder_config.short_side == 256
  assert build.builder_configs('mma52') == ('default', 'small')
  features = builder.info.features
  assert isinstance(features['video'], tfds.features.Sequence)
  assert features['video'].feature.encoding_format == 'jpeg'
  assert isinstance(features['video_id'], tfds.features.Text)
  assert features['fps'].np_dtype == np.float32
  assert features['num_frames'].np_dtype == np.int32
  assert features['segments'].shape == (None, 2)
  assert features['segments'].np_dtype == np.float32
  assert features['labels'].shape == (None,)
  assert features['labels'].np_dtype == np.int32
  assert 'anns/train.csv' in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  with pytest.raises(ValueError, match='unknown mma52 builder config'):
    build.load_builder(None, 'tiny', dataset='mma52')
  with pytest.raises(ValueError, match="unknown dataset 'ma53'"):
    build.load_builder(None, dataset='ma53')


def test_fake_mma52_builds_and_reads_back(fake_mma52, built):
  assert build.is_built(built, 'small', dataset='mma52')
  assert not build.is_built(built, 'small')  # ma52 is another dataset.
  builder = build.load_builder(built, 'small', dataset='mma52')
  assert {split: info.num_examples
          for split, info in builder.info.splits.items()} == _COUNTS
  assert builder.info.metadata['splits_without_labels'] == ['test']
  assert list(builder.data_path.glob('mma52-train.array_record-*'))
  annotated, _ = mma52_layout.read_manual_dir(fake_mma52)
  for split in _COUNTS:
    source = tfds.data_source('mma52/small', split=split, data_dir=built,
                              download=False)
    raw = records.Mma52Records(built, 'small', split)
    assert len(source) == len(raw) == len(annotated[split])
    for index, expected in enumerate(annotated[split]):  # In CSV order.
      example, record = source[index], raw[index]
      assert example['video_id'].decode() == record['video_id'] == (
          expected.video_id)
      frames = np.stack(example['video'])
      source_frames = video.read_video(expected.path)
      assert frames.shape == (len(source_frames), 80, 64, 3)  # Short side 64.
      assert frames.dtype == np.uint8
      assert example['num_frames'] == record['num_frames'] == len(frames)
      assert len(frames) == expected.total_frames  # Every frame is kept.
      assert example['fps'] == record['fps'] == 30.0
      assert example['segments'].dtype == record['segments'].dtype == (
          np.float32)
      assert example['labels'].dtype == record['labels'].dtype == np.int32
      # Segments in seconds: the CSV's frames / fps.
      frames_csv = np.array([i[:2] for i in expected.instances]).reshape(-1, 2)
      # Seconds stored as float32 from exact frames / fps: half an ulp (6e-8).
      np.testing.assert_allclose(record['segments'], frames_csv / 30,
                                 rtol=1e-6)
      # The same stored values, read through tfds and through records: exact.
      np.testing.assert_array_equal(example['segments'], record['segments'])
      np.testing.assert_array_equal(example['labels'], expected.labels)
      np.testing.assert_array_equal(record['labels'], expected.labels)
      if split == 'test':  # Unlabelled: no instances stored.
        assert record['segments'].shape == (0, 2)
        assert record['labels'].shape == (0,)
      else:
        assert 1 <= len(record['labels']) <= 5
      # The same JPEG bytes decoded by simplejpeg and by tfds (OpenCV), both
      # libjpeg-turbo's integer decoding: bit for bit on this machine.
      np.testing.assert_array_equal(
          records.decode_frames(record['jpegs'], [0, len(frames) - 1]),
          frames[[0, -1]])


def _copy_manual_dir(fake_mma52, root):
  shutil.copytree(fake_mma52, root)
  return root


def _replace_rows(path, edit):
  """Rewrites CSV `path` with `edit(fields)` applied to each data row."""
  lines = path.read_text().split('\n')
  rows = [','.join(edit(line.split(','))) if line else line
          for line in lines[1:]]
  path.write_text('\n'.join(lines[:1] + rows))


def test_every_problem_named_at_once_and_nothing_built(fake_mma52, tmp_path):
  manual_dir = _copy_manual_dir(fake_mma52, tmp_path / 'manual')
  (manual_dir / 'train' / 'train0001.mp4').write_bytes(b'not a video' * 50)
  (manual_dir / 'val' / 'val0001.mp4').unlink()
  val_lines = (manual_dir / 'anns' / 'val.csv').read_text().split('\n')
  val0001_line = next(number for number, line in enumerate(val_lines, 1)
                      if ',val0001,' in line)
  csv = manual_dir / 'anns' / 'train.csv'
  total = csv.read_text().split('\n')[1].split(',')[5]  # Of train0000.
  csv.write_text(csv.read_text() + f'99,train0000,5,4,3,{total},30.0\n'
                 '100,train0000,5,9,3,999,30.0\n')
  with pytest.raises(mma52_layout.Mma52LayoutError) as raised:
    build.prepare_mma52(manual_dir, tmp_path / 'data', 'small',
                        num_decode_workers=1)
  message = str(raised.value)
  assert 'MMA-52 in' in message and '4 problem(s)' in message
  for text in ('train/train0001.mp4 (anns/train.csv:', '): not a video',
               'end_frame 4 of train0000 is before start_frame 5',
               'train0000: total_frames 999 differs from',
               f'val/val0001.mp4 (anns/val.csv:{val0001_line}): missing'):
    assert text in message, (text, message)
  _assert_nothing_built(tmp_path / 'data')


def test_frame_count_far_from_csv_stops_before_writing(fake_mma52, tmp_path):
  manual_dir = _copy_manual_dir(fake_mma52, tmp_path / 'manual')

  def double_total(fields):
    if fields[1] == 'val0000':
      fields[5] = str(2 * int(fields[5]))
    return fields

  _replace_rows(manual_dir / 'anns' / 'val.csv', double_total)
  with pytest.raises(mma52_layout.Mma52LayoutError,
                     match=r'val/val0000.mp4 \(anns/val.csv:2\): decodes to '
                     r'\d+ frames, but total_frames is \d+'):
    build.prepare_mma52(manual_dir, tmp_path / 'data', 'small',
                        num_decode_workers=1)
  _assert_nothing_built(tmp_path / 'data')


def _run_build(*args):
  return subprocess.run(
      [sys.executable, '-m', 'maxmicro.data.build', *args], cwd=_REPO,
      env=dict(os.environ, PYTHONPATH=str(_REPO)), capture_output=True,
      text=True, timeout=120, check=False)


def test_command_line(fake_mma52, tmp_path):
  result = _run_build('--dataset=mma52', f'--manual_dir={fake_mma52}',
                      f'--data_dir={tmp_path}', '--builder_config=small',
                      '--num_decode_workers=2')
  assert result.returncode == 0, result.stderr
  assert 'train: 4 videos' in result.stdout
  assert 'test: 2 videos' in result.stdout
  assert build.is_built(tmp_path, 'small', dataset='mma52')

  failed = _run_build('--dataset=mma52', f'--manual_dir={tmp_path / "none"}',
                      f'--data_dir={tmp_path / "other"}')
  assert failed.returncode == 1
  assert 'error: MMA-52 manual directory' in failed.stderr
  assert 'Traceback' not in failed.stderr
  refused = _run_build('--dataset=mma52', '--skip_bad_videos',
                       f'--manual_dir={fake_mma52}')
  assert refused.returncode != 0
  assert '--skip_bad_videos applies to --dataset=ma52 only' in refused.stderr
