"""Bad MA-52 downloads: every problem named at once, nothing half-built."""

import logging
import os
import pathlib
import shutil
import subprocess
import sys

from absl import flags
import pytest

from maxmicro.data import build
from maxmicro.data import ma52_layout
from maxmicro.data import video

_LISTS = {'train': 'train_list_videos.txt', 'val': 'val_list_videos.txt',
          'test': 'test_list_videos.txt'}


def _write_manual_dir(root, fake_ma52_dir, lines, extra_files=None):
  """A small MA-52 layout: `lines[split]` list lines, videos copied in."""
  for split, split_lines in lines.items():
    video_dir = root / f'videos_{split}'
    video_dir.mkdir(parents=True)
    text = '\r\n'.join(split_lines)
    (root / _LISTS[split]).write_bytes(
        (text + ('' if split == 'test' else '\r\n')).encode())
  for split, sources in {
      'train': ['videos_train/0000_00_train.mp4',
                'videos_train/0000_11_train.mp4'],
      'val': ['videos_val/0000_05_val.mp4'],
      'test': ['videos_test/test0000.mp4']}.items():
    for source in sources:
      shutil.copy(fake_ma52_dir / source, root / f'videos_{split}')
  for relative, content in (extra_files or {}).items():
    (root / relative).write_bytes(content)
  return root


_GOOD_LINES = {
    'train': ['0000_00_train.mp4 0', '0000_11_train.mp4 11'],
    'val': ['0000_05_val.mp4 5'],
    'test': ['test0000.mp4 0'],
}


def _assert_nothing_built(data_dir, builder_config='small'):
  assert not build.is_built(data_dir, builder_config)
  # TFDS records the default config name before it builds
  # (ma52/.config/metadata.json); no dataset file may be left.
  leftovers = [p for p in data_dir.rglob('*')
               if p.is_file() and '.config' not in p.parts]
  assert not leftovers, leftovers
  assert not (data_dir / 'ma52' / builder_config / '1.0.0').exists()
  assert not list(data_dir.rglob('*incomplete*'))


def test_missing_manual_dir(tmp_path):
  with pytest.raises(ma52_layout.Ma52LayoutError) as raised:
    build.prepare_ma52(tmp_path / 'nowhere', tmp_path / 'data', 'small')
  message = str(raised.value)
  assert str(tmp_path / 'nowhere') in message and 'does not exist' in message
  assert 'videos_train/' in message  # The expected layout.
  _assert_nothing_built(tmp_path / 'data')


def test_mislaid_manual_dir_points_at_the_data(tmp_path, fake_ma52_dir):
  _write_manual_dir(tmp_path / 'download' / 'MA-52', fake_ma52_dir,
                    _GOOD_LINES)
  with pytest.raises(ma52_layout.Ma52LayoutError) as raised:
    build.prepare_ma52(tmp_path / 'download', tmp_path / 'data', 'small')
  message = str(raised.value)
  for name in ('train_list_videos.txt', 'val_list_videos.txt',
               'test_list_videos.txt', 'videos_train/'):
    assert name in message
  assert str(tmp_path / 'download' / 'MA-52') in message
  _assert_nothing_built(tmp_path / 'data')


def test_every_problem_in_all_lists_named_at_once(tmp_path, fake_ma52_dir):
  lines = {
      'train': ['0000_00_train.mp4 0', 'this line is wrong',
                '0000_11_train.mp4 11', 'broken.mp4 7', '0000_00_train.mp4 0'],
      'val': ['0000_05_val.mp4 52', 'empty.mp4 3', 'notes.mp4 x'],
      'test': ['test0000.mp4 0', 'test0001.mp4 0'],
  }
  manual_dir = _write_manual_dir(
      tmp_path / 'manual', fake_ma52_dir, lines,
      extra_files={'videos_train/broken.mp4': b'not an mp4 at all' * 50,
                   'videos_val/empty.mp4': b''})
  with pytest.raises(ma52_layout.Ma52LayoutError) as raised:
    build.prepare_ma52(manual_dir, tmp_path / 'data', 'small',
                       num_decode_workers=1)
  message = str(raised.value)
  expected = [
      'train_list_videos.txt:2: malformed line',
      'videos_train/broken.mp4 (train_list_videos.txt:4): not a video',
      'train_list_videos.txt:5: 0000_00_train.mp4 is listed twice',
      'val_list_videos.txt:1: label 52 of 0000_05_val.mp4 is out of range',
      'videos_val/empty.mp4 (val_list_videos.txt:2): not a video',
      "val_list_videos.txt:3: label 'x' of notes.mp4 is not an integer",
      'videos_test/test0001.mp4 (test_list_videos.txt:2): missing',
  ]
  for text in expected:
    assert text in message, (text, message)
  assert '7 problem(s)' in message
  assert len(raised.value.problems) == 7
  _assert_nothing_built(tmp_path / 'data')


def test_skip_bad_videos_still_stops_on_malformed_lines(tmp_path,
                                                        fake_ma52_dir):
  lines = dict(_GOOD_LINES, val=['0000_05_val.mp4'])
  manual_dir = _write_manual_dir(tmp_path / 'manual', fake_ma52_dir, lines)
  with pytest.raises(ma52_layout.Ma52LayoutError,
                     match=r'val_list_videos.txt:1: malformed line'):
    build.prepare_ma52(manual_dir, tmp_path / 'data', 'small',
                       skip_bad_videos=True, num_decode_workers=1)
  _assert_nothing_built(tmp_path / 'data')


def test_video_failing_only_in_full_decode_stops_before_writing(
    tmp_path, fake_ma52_dir, monkeypatch):
  # A video whose first frame decodes but whose full decode fails: the
  # quick check lets it through, the decode pass must still stop the build.
  lines = dict(_GOOD_LINES, train=_GOOD_LINES['train'] + ['late.mp4 4'])
  manual_dir = _write_manual_dir(
      tmp_path / 'manual', fake_ma52_dir, lines,
      extra_files={'videos_train/late.mp4': b'\x00' * 1000})
  monkeypatch.setattr(video, 'probe_video', lambda path: None)
  with pytest.raises(ma52_layout.Ma52LayoutError) as raised:
    build.prepare_ma52(manual_dir, tmp_path / 'data', 'small',
                       num_decode_workers=1)
  assert 'videos_train/late.mp4 (train_list_videos.txt:3): not a video' in str(
      raised.value)
  _assert_nothing_built(tmp_path / 'data')


def test_skip_bad_videos_builds_the_rest_and_reports(tmp_path, fake_ma52_dir,
                                                     caplog):
  lines = {
      'train': _GOOD_LINES['train'] + ['broken.mp4 3', 'gone.mp4 4'],
      'val': _GOOD_LINES['val'],
      'test': _GOOD_LINES['test'] + ['test0009.mp4 0'],
  }
  manual_dir = _write_manual_dir(
      tmp_path / 'manual', fake_ma52_dir, lines,
      extra_files={'videos_train/broken.mp4': b'garbage'})
  with caplog.at_level(logging.WARNING):
    builder = build.prepare_ma52(manual_dir, tmp_path / 'data', 'small',
                                 skip_bad_videos=True, num_decode_workers=1)
  assert build.is_built(tmp_path / 'data', 'small')
  assert builder.info.splits['train'].num_examples == 2
  assert builder.info.splits['test'].num_examples == 1
  reloaded = build.load_builder(tmp_path / 'data', 'small')
  assert reloaded.info.metadata['skipped_videos'] == {
      'train': ['broken.mp4', 'gone.mp4'], 'test': ['test0009.mp4']}
  assert 'skipping these 3 videos' in caplog.text
  assert 'videos_train/gone.mp4 (train_list_videos.txt:4): missing' in (
      caplog.text)
  # Already built: the manual directory is not even looked at again.
  again = build.prepare_ma52(tmp_path / 'elsewhere', tmp_path / 'data',
                             'small')
  assert again.info.splits['train'].num_examples == 2


@pytest.mark.parametrize('line,problem', [
    ('a.mp4', 'malformed line'),
    ('a.mp4 1 2', 'malformed line'),
    ('a.avi 1', "malformed file name 'a.avi'"),
    ('dir/a.mp4 1', 'malformed file name'),
    ('a.mp4 -1', 'label -1 of a.mp4 is out of range 0..51'),
    ('a.mp4 1.5', "label '1.5' of a.mp4 is not an integer"),
])
def test_list_line_problems(tmp_path, line, problem):
  for split in ('train', 'val', 'test'):
    (tmp_path / f'videos_{split}').mkdir()
  (tmp_path / 'train_list_videos.txt').write_bytes(
      f'ok.mp4 1\r\n{line}\r\n'.encode())
  (tmp_path / 'val_list_videos.txt').write_bytes(b'\n\n')
  (tmp_path / 'test_list_videos.txt').write_bytes(b'test0000.mp4 0')
  videos, problems = ma52_layout.read_manual_dir(tmp_path)
  texts = [str(p) for p in problems]
  assert f'train_list_videos.txt:2: {problem}' in '\n'.join(texts)
  assert 'val_list_videos.txt: lists no videos' in texts
  assert [v.video_id for v in videos['train']] == ['ok.mp4']
  assert [v.video_id for v in videos['test']] == ['test0000.mp4']
  where = videos['train'][0].where
  assert where == ma52_layout.Where('train_list_videos.txt', 1)
  assert str(where) == 'train_list_videos.txt:1'


def test_command_line_names_the_problem(tmp_path):
  assert 'manual_dir' not in flags.FLAGS  # Importing build defines no flags.
  repo = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run(
      [sys.executable, '-m', 'maxmicro.data.build',
       f'--manual_dir={tmp_path / "nowhere"}', f'--data_dir={tmp_path}',
       '--builder_config=small'],
      cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)),
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 1
  assert f'error: MA-52 manual directory {tmp_path / "nowhere"} does not ' in (
      result.stderr)
  assert 'Traceback' not in result.stderr
  _assert_nothing_built(tmp_path)
