"""Video decoding and writing, and the fake MA-52 written with them."""

import av
import numpy as np
import pytest

from maxmicro import labels
from maxmicro.data import synthetic
from maxmicro.data import video
from tests import conftest


def test_write_and_read_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  frames = synthetic.render_clip(3, size=(40, 48), num_frames=10, rng=rng)
  video.write_video(tmp_path / 'clip.mp4', frames)
  decoded = video.read_video(tmp_path / 'clip.mp4')
  assert decoded.shape == (10, 48, 40, 3) and decoded.dtype == np.uint8
  # Lossy: H.264 at crf 23 drops most of the per-frame pixel noise (sd 6).
  assert np.abs(decoded.astype(np.float32) - frames).mean() < 12
  with av.open(str(tmp_path / 'clip.mp4')) as container:
    assert container.streams.video[0].codec_context.name == 'h264'
  with pytest.raises(ValueError, match='even frame size'):
    video.write_video(tmp_path / 'odd.mp4', frames[:, :47])


def test_encode_video_frames_caps_uniformly(tmp_path):
  frames = synthetic.render_clip(0, size=(40, 48), num_frames=20,
                                 rng=np.random.default_rng(1))
  video.write_video(tmp_path / 'clip.mp4', frames)
  jpegs = video.encode_video_frames(tmp_path / 'clip.mp4', short_side=20,
                                    max_frames=8)
  assert len(jpegs) == 8 and all(j.startswith(b'\xff\xd8') for j in jpegs)
  np.testing.assert_array_equal(video.uniform_frame_indices(20, 8),
                                [1, 3, 6, 8, 11, 13, 16, 18])
  np.testing.assert_array_equal(video.uniform_frame_indices(5, 8),
                                np.arange(5))


def _audio_only_mp4(path):
  with av.open(str(path), mode='w') as container:
    stream = container.add_stream('aac', rate=8000)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 1024), np.float32), format='fltp', layout='mono')
    frame.sample_rate = 8000
    for packet in stream.encode(frame):
      container.mux(packet)
    container.mux(stream.encode())


def _zeroed_payload_mp4(path):
  """A well-formed mp4 whose H.264 data (the mdat box) is all zeros."""
  frames = synthetic.render_clip(3, size=(40, 48), num_frames=6,
                                 rng=np.random.default_rng(0))
  video.write_video(path, frames)
  data = bytearray(path.read_bytes())
  start, end = data.index(b'mdat') + 4, data.index(b'moov') - 4
  data[start:end] = bytes(end - start)
  path.write_bytes(bytes(data))


@pytest.mark.parametrize('make,problem', [
    (None, 'missing'),
    (lambda p: p.write_bytes(b'hello, not a video'), 'not a video or corrupt'),
    (lambda p: p.write_bytes(b''), 'not a video or corrupt'),
    (_audio_only_mp4, 'has no video stream'),
    (_zeroed_payload_mp4, 'corrupt after 0 frames'),
])
def test_read_video_errors_name_file_and_problem(tmp_path, make, problem):
  path = tmp_path / 'bad.mp4'
  if make:
    make(path)
  with pytest.raises(video.VideoError) as raised:
    video.read_video(path)
  assert str(raised.value).startswith(f'{path}: ')
  assert problem in raised.value.what
  assert video.probe_video(path) == raised.value.what


def test_fake_ma52_layout(fake_ma52_dir):
  train, val, test = conftest.FAKE_VIDEOS_PER_CLASS
  for list_name, video_dir, count in (
      ('train_list_videos.txt', 'videos_train', 52 * train),
      ('val_list_videos.txt', 'videos_val', 52 * val),
      ('test_list_videos.txt', 'videos_test', 52 * test)):
    raw = (fake_ma52_dir / list_name).read_bytes()
    lines = raw.decode().split('\r\n')
    assert b'\n' not in raw.replace(b'\r\n', b'')  # CRLF only.
    if list_name.startswith('test'):
      assert not raw.endswith(b'\r\n')  # As the official test list.
      assert all(line.endswith(' 0') for line in lines)  # Placeholders.
      assert lines[0] == 'test0000.mp4 0'
    else:
      assert raw.endswith(b'\r\n') and lines.pop() == ''
      listed = sorted(int(line.split()[1]) for line in lines)
      assert listed == sorted(list(range(52)) * (count // 52))
    assert len(lines) == count
    assert sorted(p.name for p in (fake_ma52_dir / video_dir).iterdir()) == (
        sorted(line.split()[0] for line in lines))
  names = (fake_ma52_dir / 'label_name.txt').read_text().splitlines()
  assert names[7] == f'7\t{labels.ACTION_NAMES[7]}'
  clip = video.read_video(fake_ma52_dir / 'videos_val' / '0000_05_val.mp4')
  assert clip.shape[1:] == (48, 40, 3)  # Portrait.
  assert conftest.FAKE_NUM_FRAMES[0] <= len(clip) <= conftest.FAKE_NUM_FRAMES[1]


def test_fake_classes_differ_in_motion_not_only_in_appearance():
  # Classes 11 and 15 (upper limb, same axis) differ only in the kind of
  # motion (1 vs 2 cycles): the same region and colour in every frame.
  assert synthetic.class_motion(11)[:2] == synthetic.class_motion(15)[:2]
  assert synthetic.class_motion(11)[2] != synthetic.class_motion(15)[2]

  def blob_track(action_id):
    clip = synthetic.render_clip(action_id, size=(80, 96), num_frames=24,
                                 rng=np.random.default_rng(0))
    colour = np.array([80, 250, 80], np.float32)  # Upper-limb blob.
    close = np.abs(clip.astype(np.float32) - colour).sum(-1) < 60
    xs = [np.nonzero(mask)[1].mean() for mask in close]
    return np.asarray(xs)

  one_cycle, two_cycles = blob_track(11), blob_track(15)
  # Horizontal axis: count direction changes of the blob's x.
  turns = lambda xs: int((np.diff(np.sign(np.diff(xs))) != 0).sum())
  assert np.ptp(one_cycle) > 10 and np.ptp(two_cycles) > 10  # Strong motion.
  assert turns(two_cycles) > turns(one_cycle)
  # Every class is a distinct (body part, axis, kind).
  assert len({synthetic.class_motion(a) for a in range(52)}) == 52


def test_write_fake_ma52_is_deterministic(tmp_path):
  # At the demo's frame size: x264's macroblock tree made some of these
  # differ from run to run.
  kwargs = dict(videos_per_class=(1, 1, 1), size=(80, 96),
                num_frames=(20, 28), seed=3)
  first = synthetic.write_fake_ma52(tmp_path / 'a', **kwargs)
  second = synthetic.write_fake_ma52(tmp_path / 'b', **kwargs)
  files = sorted(path.relative_to(first) for path in first.rglob('*')
                 if path.is_file())
  assert len(files) == 3 * 52 + 4
  for name in files:
    assert (first / name).read_bytes() == (second / name).read_bytes(), name
