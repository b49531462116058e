"""Reading MMA-52 annotation files: the official format, every problem."""

import numpy as np
import pytest

from maxmicro.data import ma52_layout
from maxmicro.data import mma52_layout

_HEADER = 'id,video_id,start_frame,end_frame,class,total_frames,fps'
# Rows as the official files write them (train/val fps '30.0', test '30').
_GOOD = {
    'train': ['0,train0000,23,71,9,168,30.0',
              '1,train0000,68,125,21,168,30.0',
              '2,train0001,0,308,12,309,29.0',
              '3,train0000,122,161,1,168,30.0'],
    'val': ['0,val0000,63,337,0,342,30.0'],
    'test': ['0,test0000,0,20,1,166,30', '1,test0001,0,20,2,232,29'],
}


def _write(root, rows, *, newline='\n', header=_HEADER, videos=None):
  """An MMA-52 manual dir: `rows[split]` CSV rows, empty files as videos."""
  (root / 'anns').mkdir(parents=True)
  for split, split_rows in rows.items():
    (root / split).mkdir()
    text = newline.join([header] + split_rows)
    if split != 'test':  # The official test.csv has no final newline.
      text += newline
    (root / 'anns' / f'{split}.csv').write_bytes(text.encode())
    names = videos[split] if videos else {row.split(',')[1]
                                          for row in split_rows}
    for name in names:
      (root / split / f'{name}.mp4').write_bytes(b'')
  return root


@pytest.mark.parametrize('newline', ['\n', '\r\n'])
def test_official_format(tmp_path, newline):
  videos, problems = mma52_layout.read_manual_dir(
      _write(tmp_path, _GOOD, newline=newline))
  assert not problems, [str(p) for p in problems]
  train = videos['train']
  # Videos in order of first row; a video's rows need not be adjacent.
  assert [v.video_id for v in train] == ['train0000', 'train0001']
  first = train[0]
  assert first.path == tmp_path / 'train' / 'train0000.mp4'
  assert (first.fps, first.total_frames) == (30.0, 168)
  assert str(first.where) == 'anns/train.csv:2'
  assert first.segments.dtype == np.float32 and first.segments.shape == (3, 2)
  # Seconds as float32 from exact frames / fps: half an ulp (6e-8).
  np.testing.assert_allclose(first.segments,
                             np.array([[23, 71], [68, 125], [122, 161]]) / 30,
                             rtol=1e-6)
  assert first.labels.dtype == np.int32
  np.testing.assert_array_equal(first.labels, [9, 21, 1])
  # As above, at fps 29.
  np.testing.assert_allclose(train[1].segments, [[0, 308 / 29]], rtol=1e-6)
  assert [v.video_id for v in videos['validation']] == ['val0000']
  # The test split is unlabelled: placeholders are read, instances dropped.
  test = videos['test']
  assert [(v.video_id, v.fps, v.total_frames) for v in test] == [
      ('test0000', 30.0, 166), ('test0001', 29.0, 232)]
  assert test[0].segments.shape == (0, 2) and test[0].labels.shape == (0,)
  assert test[0].labels.dtype == np.int32


def test_test_placeholder_class_is_not_checked(tmp_path):
  rows = dict(_GOOD, test=['0,test0000,0,20,99,166,30'])
  _, problems = mma52_layout.read_manual_dir(_write(tmp_path, rows))
  assert not problems


def test_every_bad_row_named_at_once(tmp_path):
  rows = {
      'train': [
          '0,train0000,23,71,9,168,30.0',
          '1,train0000,68,125,21',  # Line 3: 5 columns.
          # 4: start not an integer, class out of range, video missing.
          '2,train0003,x,125,52,168,30.0',
          '3,train0000,80,70,21,168,30.0',  # 5: end before start.
          '4,train0000,-4,70,21,168,30.0',  # 6: negative start.
          '5,train0000,10,170,21,168,30.0',  # 7: end beyond total_frames.
          '6,train0000,10,70,52,168,30.0',  # 8: class out of range.
          '7,train0000,10,70,3,200,30.0',  # 9: total_frames disagrees.
          '8,train0000,10,70,3,168,29.0',  # 10: fps disagrees.
          '9,train0000,10,70,3,168,fast',  # 11: fps not a number.
          '10,train0002,10,70,3,168,30.0',  # 12: video missing on disk.
      ],
      'val': ['0,val0000,63,337,0,342,30.0', '', '1,val0000,1,2,-1,342,30.0'],
      'test': _GOOD['test'],
  }
  videos = {'train': ['train0000'], 'val': ['val0000'],
            'test': ['test0000', 'test0001']}
  manual_dir = _write(tmp_path, rows, newline='\r\n', videos=videos)
  _, problems = mma52_layout.read_manual_dir(manual_dir)
  expected = [
      'anns/train.csv:3: malformed row',
      "anns/train.csv:4: start_frame 'x' of train0003 is not an integer",
      'anns/train.csv:4: class 52 of train0003 is out of range',
      'train/train0003.mp4 (anns/train.csv:4): missing',
      'anns/train.csv:5: end_frame 70 of train0000 is before start_frame 80',
      'anns/train.csv:6: start_frame -4 of train0000 is negative',
      'anns/train.csv:7: end_frame 170 of train0000 is beyond total_frames 168',
      'anns/train.csv:8: class 52 of train0000 is out of range 0..51',
      'anns/train.csv:9: train0000: total_frames 200 differs from 168 at '
      'anns/train.csv:2',
      'anns/train.csv:10: train0000: fps 29 differs from 30 at '
      'anns/train.csv:2',
      "anns/train.csv:11: fps 'fast' of train0000 is not a number",
      'train/train0002.mp4 (anns/train.csv:12): missing',
      'anns/val.csv:4: class -1 of val0000 is out of range 0..51',
  ]
  texts = [str(problem) for problem in problems]
  assert len(texts) == len(expected), texts
  for text, start in zip(texts, expected):  # In file and line order.
    assert text.startswith(start), (text, start)
  error = mma52_layout.Mma52LayoutError(
      mma52_layout.problems_message(manual_dir, problems, action='stopped'),
      problems)
  assert isinstance(error, ValueError)
  assert f'MMA-52 in {manual_dir} has 13 problem(s); stopped' in str(error)


def test_bad_header_and_empty_file(tmp_path):
  manual_dir = _write(tmp_path, _GOOD)
  (manual_dir / 'anns' / 'val.csv').write_bytes(
      b'video_id,start,end,label\nval0000,1,2,3\n')
  (manual_dir / 'anns' / 'test.csv').write_bytes((_HEADER + '\n').encode())
  videos, problems = mma52_layout.read_manual_dir(manual_dir)
  assert [str(p) for p in problems] == [
      "anns/val.csv:1: header 'video_id,start,end,label' is not "
      f"'{_HEADER}'",
      'anns/test.csv: lists no videos']
  assert len(videos['train']) == 2 and not videos['validation']


def test_missing_and_mislaid_manual_dir(tmp_path):
  with pytest.raises(mma52_layout.Mma52LayoutError, match='does not exist'):
    mma52_layout.read_manual_dir(tmp_path / 'nowhere')
  _write(tmp_path / 'download' / 'MMA-52', _GOOD)
  with pytest.raises(mma52_layout.Mma52LayoutError) as raised:
    mma52_layout.read_manual_dir(tmp_path / 'download')
  message = str(raised.value)
  assert 'is missing anns/train.csv, train/, anns/val.csv' in message
  assert f'the data is in {tmp_path / "download" / "MMA-52"}' in message
  assert isinstance(raised.value, ma52_layout.LayoutError)


def test_frame_count_tolerance():
  video = mma52_layout.AnnotatedVideo(
      video_id='v', path=None, fps=30.0, total_frames=200, instances=(),
      where=ma52_layout.Where('anns/train.csv', 2))
  # 5% of 200 frames: 10 frames either way.
  assert mma52_layout.frame_count_problem(video, 190) is None
  assert mma52_layout.frame_count_problem(video, 210) is None
  assert 'decodes to 189 frames, but total_frames is 200' in (
      mma52_layout.frame_count_problem(video, 189))
  short = mma52_layout.AnnotatedVideo('v', None, 30.0, 20, (), video.where)
  assert mma52_layout.frame_count_problem(short, 22) is None  # 2 at least.
  assert mma52_layout.frame_count_problem(short, 23) is not None
