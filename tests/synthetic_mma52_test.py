"""The fake MMA-52: official layout, real videos, overlapping instances."""

import json

import numpy as np
import pytest

from maxmicro.data import mma52_layout
from maxmicro.data import synthetic
from maxmicro.data import video

_HEADER = b'id,video_id,start_frame,end_frame,class,total_frames,fps\n'
_KWARGS = dict(videos_per_split=(8, 3, 2), size=(32, 40),
               num_frames=(150, 200), seed=0)


@pytest.fixture(scope='module')
def fake_mma52(tmp_path_factory):
  return synthetic.write_fake_mma52(tmp_path_factory.mktemp('fake_mma52'),
                                    **_KWARGS)


def _rows(path):
  lines = path.read_bytes().decode().split('\n')
  return [line.split(',') for line in lines[1:] if line]


def test_official_layout_and_csv_format(fake_mma52):
  for split, count in (('train', 8), ('val', 3), ('test', 2)):
    data = (fake_mma52 / 'anns' / f'{split}.csv').read_bytes()
    assert data.startswith(_HEADER) and b'\r' not in data
    assert data.endswith(b'\n') == (split != 'test')  # As the official files.
    rows = _rows(fake_mma52 / 'anns' / f'{split}.csv')
    assert [int(row[0]) for row in rows] == list(range(len(rows)))
    ids = list(dict.fromkeys(row[1] for row in rows))
    assert ids == [f'{split}{i:04d}' for i in range(count)]
    assert sorted(p.name for p in (fake_mma52 / split).iterdir()) == [
        f'{video_id}.mp4' for video_id in ids]
    assert {row[6] for row in rows} == ({'30'} if split == 'test' else
                                        {'30.0'})
  # test.csv: one 20-frame placeholder row per video, a dummy class.
  assert [row[2:5] for row in _rows(fake_mma52 / 'anns' / 'test.csv')] == [
      ['0', '20', '1'], ['0', '20', '2']]
  # The layout reader finds nothing wrong.
  videos, problems = mma52_layout.read_manual_dir(fake_mma52)
  assert not problems, [str(p) for p in problems]
  assert [len(videos[s]) for s in ('train', 'validation', 'test')] == [8, 3, 2]


def test_frame_counts_and_mmad_json(fake_mma52):
  database = json.loads((fake_mma52 / 'mmad.json').read_text())
  for row in _rows(fake_mma52 / 'anns' / 'val.csv')[:4]:
    clip = video.read_video(fake_mma52 / 'val' / f'{row[1]}.mp4')
    assert clip.shape == (int(row[5]), 40, 32, 3)
    entry = database[row[1]]
    assert entry['subset'] == 'val'
    assert entry['duration'] == round(int(row[5]) / 30, 4)
    assert [int(row[4]), round(int(row[2]) / 30, 4),
            round(int(row[3]) / 30, 4)] in entry['actions']
  assert database['test0000']['actions'] == [[1, 0.0, round(20 / 30, 4)]]


def test_instance_statistics(fake_mma52):
  videos, _ = mma52_layout.read_manual_dir(fake_mma52)
  overlapping = total = 0
  for split in ('train', 'validation'):
    for item in videos[split]:
      assert 150 <= item.total_frames <= 200
      assert 1 <= len(item.instances) <= 5
      assert len(set(item.labels)) == len(item.labels)  # Distinct classes.
      for index, (start, end, _) in enumerate(item.instances):
        assert 8 <= end - start and end <= item.total_frames - 1
        total += 1
        overlapping += any(
            other_start < end and start < other_end
            for other, (other_start, other_end, _) in enumerate(item.instances)
            if other != index)
  assert overlapping >= total / 2, (overlapping, total)


def test_blob_only_while_its_instance_is_active():
  rng = np.random.default_rng(0)
  frames = synthetic.render_untrimmed([(20, 60, 11)], size=(32, 40),
                                      num_frames=80, fps=30, rng=rng)
  outside = np.concatenate([frames[:20], frames[60:]]).astype(np.float32)
  background = np.median(outside, axis=0)
  change = np.abs(frames.astype(np.float32) - background).sum(-1).max((1, 2))
  assert change[20:60].min() > 150  # The green upper-limb blob is drawn...
  assert change[:20].max() < 100 and change[60:].max() < 100  # ...only here.


def test_class_subset_and_overlaps_use_other_body_parts(tmp_path):
  # Three body parts: overlapping instances never share one.
  classes = (0, 5, 11)  # body, head, upper limb
  root = synthetic.write_fake_mma52(
      tmp_path, videos_per_split=(4, 1, 1), size=(16, 16),
      num_frames=(60, 80), instance_frames=(8, 40), classes=classes,
      write_json=False, seed=1)
  videos, problems = mma52_layout.read_manual_dir(root)
  assert not problems and not (root / 'mmad.json').exists()
  for item in videos['train']:
    assert set(item.labels) <= set(classes) and len(item.instances) <= 3
    parts = [synthetic.class_motion(label)[0] for label in item.labels]
    assert len(set(parts)) == len(parts)
  with pytest.raises(ValueError, match='must exceed 20'):
    synthetic.write_fake_mma52(tmp_path / 'x', num_frames=(12, 30))


def test_write_fake_mma52_is_deterministic(tmp_path):
  kwargs = dict(videos_per_split=(2, 1, 1), size=(32, 32),
                num_frames=(40, 60), instance_frames=(8, 30), seed=3)
  first = synthetic.write_fake_mma52(tmp_path / 'a', **kwargs)
  second = synthetic.write_fake_mma52(tmp_path / 'b', **kwargs)
  files = sorted(path.relative_to(first) for path in first.rglob('*')
                 if path.is_file())
  assert len(files) == 4 + 3 + 1  # Videos, CSVs, mmad.json.
  for name in files:
    assert (first / name).read_bytes() == (second / name).read_bytes(), name
